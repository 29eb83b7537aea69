//! The memory baseline: a bare tokio server (a separate process, this executable run with the
//! hidden `--idle-server` flag) with one task per connection parked in a frame read, on a
//! two-thread runtime like sirend's. No crypto, no sessions, no storage: what an idle TCP
//! connection costs a tokio server at all.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use siren_net::{read_frame, write_frame};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::procfs;
use crate::sessions::parallel;

/// Child mode: serves until its standard input closes.
pub fn serve() -> anyhow::Result<()> {
    // The parent holds our stdin; when it goes away, so do we.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("listening on {}", listener.local_addr()?);
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let (mut rd, mut wr) = stream.into_split();
                // Each frame is answered with one byte, so the client knows the task runs.
                while read_frame(&mut rd, 4096).await.is_ok() {
                    if wr.write_all(&[1]).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// Resident memory of the bare server before and after `count` idle connections.
pub async fn measure(count: usize) -> anyhow::Result<(u64, u64)> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let mut child = Command::new(exe)
        .arg("--idle-server")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the bare idle server")?;
    let result = measure_child(&mut child, count).await;
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn measure_child(child: &mut Child, count: usize) -> anyhow::Result<(u64, u64)> {
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let Some(addr) = line.trim().strip_prefix("listening on ") else {
        bail!("the bare idle server printed {line:?}");
    };
    let addr = Arc::new(addr.to_owned());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = procfs::rss_bytes(child.id())?;
    let connections = parallel(count, crate::sessions::WORKERS, move |_| {
        let addr = addr.clone();
        async move {
            let mut stream = TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            write_frame(&mut stream, &[0u8; 16], 4096).await?;
            let mut one = [0u8; 1];
            stream.read_exact(&mut one).await?;
            anyhow::Ok(stream)
        }
    })
    .await
    .context("connecting to the bare idle server")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procfs::rss_bytes(child.id())?;
    drop(connections);
    Ok((before, after))
}
