//! Files in the page: a received file (checked against its sender's hash by the core) is
//! handed to the page, which offers it as a download; a file to send comes from the page's
//! file picker as bytes (`sendFile`), so there is no path to read.

use siren_client_session::chat::Files;

/// The page's [`Files`].
pub struct PageFiles<F> {
    offer: F,
}

impl<F: FnMut(&str, &[u8])> PageFiles<F> {
    /// Files offered to the page with `offer(name, data)`.
    pub fn new(offer: F) -> Self {
        PageFiles { offer }
    }
}

impl<F: FnMut(&str, &[u8])> Files for PageFiles<F> {
    async fn save(&mut self, name: &str, data: &[u8]) -> anyhow::Result<String> {
        (self.offer)(name, data);
        Ok("offered as a download".into())
    }

    async fn read(&mut self, path: &str) -> anyhow::Result<(String, Vec<u8>)> {
        anyhow::bail!("a page cannot read {path}: choose the file with the file picker")
    }
}
