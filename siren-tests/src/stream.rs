//! A stream of messages from a library client, for tests that interrupt a server mid-stream.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use siren_api::Uid;
use siren_client::profile::Profile;

/// Texts `message 0`, `message 1`, … sent from the device of a CLI profile to one user, each as
/// soon as the one before was acknowledged, from a library client on a thread of its own, until
/// a send fails (the server went away mid-request: that one is not acknowledged).
pub struct SendStream {
    acked: Arc<Mutex<Vec<String>>>,
    thread: JoinHandle<()>,
}

impl SendStream {
    /// Starts sending from the device of `profile` to `to`.
    pub fn start(profile: &Path, to: &str) -> SendStream {
        let acked: Arc<Mutex<Vec<String>>> = Arc::default();
        let (profile, to) = (profile.to_owned(), Uid::parse(to).unwrap());
        let thread = {
            let acked = acked.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let profile = Profile::open(&profile, None).unwrap();
                    let mut client = siren_client::client::open(profile).unwrap();
                    client.connect().await.unwrap();
                    for i in 0.. {
                        let text = format!("message {i}");
                        match client.send_text(&to, &text).await {
                            Ok(_) => acked.lock().unwrap().push(text),
                            Err(_) => return,
                        }
                    }
                })
            })
        };
        SendStream { acked, thread }
    }

    /// How many texts were acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits for the stream to end (its server went away) and returns the texts acknowledged.
    pub fn join(self) -> Vec<String> {
        self.thread.join().unwrap();
        self.acked.lock().unwrap().clone()
    }
}
