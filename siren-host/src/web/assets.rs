//! The page: the browser client's files, read from its built directory at start-up (why not
//! built into the binary: ARCHITECTURE.md, "The browser client"), each answered with the security headers
//! a page that holds keys needs — a Content-Security-Policy that lets it load nothing and talk to
//! nothing outside its own origin, no framing, no sniffing, no referrer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use axum::Extension;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// The policy of every page: scripts and the wasm module from this origin only (wasm needs
/// `'wasm-unsafe-eval'` to be compiled, not `'unsafe-eval'`), the WebSocket and nothing else to
/// talk to, no plugins, no base URL, no forms posted elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' \
     'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
     connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The files of the browser client, read into memory at start-up (so what is served cannot
/// change or escape the directory while the server runs).
pub struct Assets {
    files: HashMap<String, Asset>,
    /// Where they were read from (`None`: the built-in page saying how to build the client).
    pub source: Option<PathBuf>,
}

/// One file.
struct Asset {
    content_type: &'static str,
    body: Bytes,
}

/// The most the client's files may weigh together.
const MAX_TOTAL: u64 = 64 << 20;

/// The page served when no client is built.
const PLACEHOLDER: &[u8] = include_bytes!("placeholder.html");

/// The content type of a file the client may hold, by its extension (others are not served).
fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

/// A name served as is: letters, digits, `.`, `_` and `-`, not starting with a dot.
fn plain_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Assets {
    /// The client in `configured` (`[web] assets`, which must hold one), else in `web-dist`
    /// beside the executable's directory if it holds one, else the built-in page saying how to
    /// build it.
    pub fn load(configured: Option<&Path>) -> anyhow::Result<Assets> {
        if let Some(dir) = configured {
            return Assets::from_dir(dir)
                .with_context(|| format!("`web.assets` ({})", dir.display()));
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.join("web-dist")));
        match beside {
            Some(dir) if dir.join("index.html").is_file() => Assets::from_dir(&dir)
                .with_context(|| format!("the built web client in {}", dir.display())),
            _ => Ok(Assets::placeholder()),
        }
    }

    fn placeholder() -> Assets {
        let index = Asset {
            content_type: "text/html; charset=utf-8",
            body: Bytes::from_static(PLACEHOLDER),
        };
        Assets {
            files: HashMap::from([("index.html".to_owned(), index)]),
            source: None,
        }
    }

    /// Reads the files directly in `dir` that a client is made of (by extension; others, and
    /// subdirectories, are left out).
    fn from_dir(dir: &Path) -> anyhow::Result<Assets> {
        let mut files = HashMap::new();
        let mut total = 0u64;
        for entry in std::fs::read_dir(dir).context("cannot read the directory")? {
            let entry = entry.context("cannot read the directory")?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some(content_type) = content_type(&name) else {
                continue;
            };
            if !plain_name(&name) || !entry.file_type()?.is_file() {
                continue;
            }
            let body =
                std::fs::read(entry.path()).with_context(|| format!("cannot read {name}"))?;
            total += body.len() as u64;
            if total > MAX_TOTAL {
                bail!("the client's files weigh more than {} MiB", MAX_TOTAL >> 20);
            }
            files.insert(
                name,
                Asset {
                    content_type,
                    body: Bytes::from(body),
                },
            );
        }
        if !files.contains_key("index.html") {
            bail!("no index.html: build the client with scripts/build-web.sh");
        }
        Ok(Assets {
            files,
            source: Some(dir.to_path_buf()),
        })
    }

    /// The answer to `GET path`.
    fn answer(&self, path: &str) -> Option<&Asset> {
        let name = match path.strip_prefix('/')? {
            "" => "index.html",
            name => name,
        };
        self.files.get(name)
    }
}

/// Anything else.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Answers `GET uri` from the client's files.
pub async fn serve(Extension(assets): Extension<Arc<Assets>>, uri: Uri) -> Response {
    match assets.answer(uri.path()) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                // The files' names do not change with their content: always revalidate.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.body.clone(),
        )
            .into_response(),
        None => not_found().await,
    }
}

/// Adds the security headers to every answer of the web listener.
pub async fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(
        h,
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_directory_is_served_by_name_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.path().join("app.js"), "1").unwrap();
        std::fs::write(dir.path().join(".hidden.js"), "secret").unwrap();
        std::fs::write(dir.path().join("notes.md"), "not served").unwrap();
        std::fs::create_dir(dir.path().join("sub.js")).unwrap();
        let assets = Assets::load(Some(dir.path())).unwrap();
        assert_eq!(assets.answer("/").unwrap().body.as_ref(), b"<p>hi</p>");
        assert_eq!(
            assets.answer("/app.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        for path in [
            "/.hidden.js",
            "/notes.md",
            "/sub.js",
            "/../index.html",
            "/a/app.js",
            "",
        ] {
            assert!(assets.answer(path).is_none(), "{path} was served");
        }
        let empty = tempfile::tempdir().unwrap();
        let refused = Assets::load(Some(empty.path())).err().unwrap();
        assert!(
            format!("{refused:#}").contains("no index.html"),
            "{refused:#}"
        );
    }
}
