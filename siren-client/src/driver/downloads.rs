//! Received files into the downloads folder. The name comes from the sender: it is shown, and
//! made into a safe file name here — one path component, no control characters, no leading dot,
//! never replacing an existing file.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Longest file name written, in characters.
const MAX_NAME: usize = 100;

/// A file name made from a sender's name: path separators, control characters and characters
/// shells or terminals treat specially become `_`; no leading dots (hidden files, `..`); never
/// empty.
pub fn safe_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_control()
                || crate::terminal::is_escaped(c)
                || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
            {
                '_'
            } else {
                c
            }
        })
        .take(MAX_NAME)
        .collect();
    while out.starts_with('.') {
        out.remove(0);
    }
    let out = out.trim().to_owned();
    if out.is_empty() {
        "file".to_owned()
    } else {
        out
    }
}

/// Saves `data` in `dir` (created if missing) under a safe form of `name`, adding " (1)",
/// " (2)"… before the extension when the name is taken. Returns the path written.
pub async fn save(dir: &Path, name: &str, data: &[u8]) -> anyhow::Result<PathBuf> {
    tokio::fs::create_dir_all(dir)
        .await
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let safe = safe_name(name);
    let (stem, ext) = match safe.rfind('.') {
        Some(i) if i > 0 => (safe[..i].to_owned(), safe[i..].to_owned()),
        _ => (safe.clone(), String::new()),
    };
    for n in 0..1000u32 {
        let candidate = if n == 0 {
            dir.join(&safe)
        } else {
            dir.join(format!("{stem} ({n}){ext}"))
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
            .await;
        match file {
            Ok(mut f) => {
                use tokio::io::AsyncWriteExt as _;
                f.write_all(data)
                    .await
                    .with_context(|| format!("cannot write {}", candidate.display()))?;
                f.sync_all().await.ok();
                return Ok(candidate);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot write {}", candidate.display()));
            }
        }
    }
    anyhow::bail!("too many files named {safe} in {}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_one_harmless_component() {
        assert_eq!(safe_name("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("a\u{1b}[2Jb.txt"), "a_[2Jb.txt");
        assert_eq!(safe_name("..."), "file");
        assert_eq!(safe_name(""), "file");
        assert_eq!(safe_name("report.pdf"), "report.pdf");
        assert_eq!(safe_name(&"x".repeat(500)).len(), MAX_NAME);
    }

    #[tokio::test]
    async fn existing_files_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let a = save(dir.path(), "r.txt", b"one").await.unwrap();
        let b = save(dir.path(), "r.txt", b"two").await.unwrap();
        assert_eq!(a, dir.path().join("r.txt"));
        assert_eq!(b, dir.path().join("r (1).txt"));
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        assert_eq!(std::fs::read(&b).unwrap(), b"two");
    }
}
