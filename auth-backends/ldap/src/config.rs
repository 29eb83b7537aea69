//! `[auth.options.ldap]`: the configuration as written, and its validation into [`Settings`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use siren_api::{Error, ErrorCode};
use zeroize::Zeroizing;

/// The placeholder replaced by the (escaped) username in `bind_dn_template` and `search_filter`.
pub const USER_PLACEHOLDER: &str = "{user}";

/// The longest `timeout_secs` accepted.
pub const MAX_TIMEOUT_SECS: u64 = 300;

/// The options of the LDAP credential backend (`[auth.options.ldap]` in `sirend.toml`).
///
/// Exactly one of two modes is configured:
///
/// * **direct bind**: `bind_dn_template` (`uid={user},ou=people,dc=example,dc=test`); the user's
///   DN is the template with `{user}` replaced by the DN-escaped username (RFC 4514);
/// * **search then bind**: `search_base` and `search_filter`
///   (`(&(objectClass=inetOrgPerson)(uid={user}))`, `{user}` replaced by the filter-escaped
///   username, RFC 4515), found with the service account `service_dn` and `service_password`
///   or `service_password_file` (or anonymously if `service_dn` is absent).
///
/// Then the user's DN is bound with the password. If `required_group` is set, the user must also
/// be a member of that group. See the crate documentation for every key and an example.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// The directory: `ldap://host[:port]` or `ldaps://host[:port]` (no DN or query part).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before any bind (default false).
    pub starttls: bool,
    /// A PEM file of the CA certificate(s) that issued the directory's certificate, for
    /// `ldaps://` and StartTLS; the system's roots when absent.
    pub ca_file: Option<PathBuf>,
    /// Direct bind: the user's DN, with `{user}` where the username goes.
    pub bind_dn_template: Option<String>,
    /// Search mode: where to look for users.
    pub search_base: Option<String>,
    /// Search mode: the filter that finds exactly one user, with `{user}` where the username goes.
    pub search_filter: Option<String>,
    /// Search mode: the DN of the account that searches (anonymous search when absent).
    pub service_dn: Option<String>,
    /// Search mode: the service account's password.
    pub service_password: Option<String>,
    /// Search mode: a file holding the service account's password (one trailing newline is
    /// ignored); instead of `service_password`.
    pub service_password_file: Option<PathBuf>,
    /// The DN of a group the user must belong to (any user of the directory when absent).
    pub required_group: Option<String>,
    /// The group's attribute that lists its members (default `member`; `memberUid` for
    /// `posixGroup`).
    pub group_member_attribute: String,
    /// What the member attribute holds: the user's DN (`"dn"`, the default, as in
    /// `groupOfNames`) or the username (`"user"`, as in `posixGroup`'s `memberUid`).
    pub group_member_value: MemberValue,
    /// The longest one login may wait on the directory, connection and TLS included (default 5).
    pub timeout_secs: u64,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn_template: None,
            search_base: None,
            search_filter: None,
            service_dn: None,
            service_password: None,
            service_password_file: None,
            required_group: None,
            group_member_attribute: "member".to_owned(),
            group_member_value: MemberValue::Dn,
            timeout_secs: 5,
        }
    }
}

impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("bind_dn_template", &self.bind_dn_template)
            .field("search_base", &self.search_base)
            .field("search_filter", &self.search_filter)
            .field("service_dn", &self.service_dn)
            .field(
                "service_password",
                &self.service_password.as_ref().map(|_| "<redacted>"),
            )
            .field("service_password_file", &self.service_password_file)
            .field("required_group", &self.required_group)
            .field("group_member_attribute", &self.group_member_attribute)
            .field("group_member_value", &self.group_member_value)
            .field("timeout_secs", &self.timeout_secs)
            .finish()
    }
}

/// What a group's member attribute holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberValue {
    /// The member's DN (`groupOfNames` / `member`, `groupOfUniqueNames` / `uniqueMember`).
    #[default]
    Dn,
    /// The bare username (`posixGroup` / `memberUid`).
    User,
}

/// How users are found.
pub(crate) enum Mode {
    /// The DN is the template with the escaped username.
    Direct { template: String },
    /// A search for the user's DN, then a bind.
    Search {
        base: String,
        filter: String,
        /// The service account; anonymous search when `None`.
        service: Option<(String, Zeroizing<String>)>,
    },
}

/// The group check.
pub(crate) struct Group {
    pub dn: String,
    pub attribute: String,
    pub value: MemberValue,
}

/// A validated configuration.
pub(crate) struct Settings {
    pub url: String,
    pub starttls: bool,
    /// The TLS client configuration, when the connection uses TLS (ldaps or StartTLS).
    pub tls: Option<Arc<ClientConfig>>,
    pub mode: Mode,
    pub group: Option<Group>,
    pub timeout: Duration,
}

fn bad(key: &str, why: impl fmt::Display) -> Error {
    Error::new(ErrorCode::Internal, format!("ldap option `{key}`: {why}"))
}

fn non_empty(key: &str, value: &Option<String>) -> Result<Option<String>, Error> {
    match value {
        Some(v) if v.trim().is_empty() => Err(bad(key, "is empty")),
        Some(v) => Ok(Some(v.clone())),
        None => Ok(None),
    }
}

/// Checks the URL; returns (uses TLS from the start, host).
fn check_url(url: &str) -> Result<(bool, String), Error> {
    if url.is_empty() {
        return Err(bad(
            "url",
            "is required (ldap://host:port or ldaps://host:port)",
        ));
    }
    let lower = url.to_ascii_lowercase();
    let (ldaps, rest) = if let Some(rest) = lower.strip_prefix("ldaps://") {
        (true, rest)
    } else if let Some(rest) = lower.strip_prefix("ldap://") {
        (false, rest)
    } else {
        return Err(bad(
            "url",
            format!("{url:?} must start with ldap:// or ldaps://"),
        ));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if !path.is_empty() {
        return Err(bad(
            "url",
            format!(
                "{url:?} must be just ldap[s]://host[:port]; the base DN goes in `search_base`"
            ),
        ));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, rest)) => (format!("[{h}]"), rest.strip_prefix(':').map(str::to_owned)),
            None => return Err(bad("url", format!("{url:?}: unclosed '[' in the host"))),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p.to_owned())),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() || host.contains('@') {
        return Err(bad(
            "url",
            format!("{url:?} needs a host (and no user part)"),
        ));
    }
    if let Some(port) = port
        && !matches!(port.parse::<u16>(), Ok(p) if p != 0)
    {
        return Err(bad(
            "url",
            format!("{url:?}: {port:?} is not a port number"),
        ));
    }
    Ok((ldaps, host))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

fn read_secret_file(key: &str, path: &Path) -> Result<Zeroizing<String>, Error> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| bad(key, format!("cannot read {}: {e}", path.display())))?,
    );
    let trimmed = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// The rustls client configuration: the CA file's certificates, or the system's roots; always
/// the ring provider (never the process default, which another crate may have set otherwise).
fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad("ca_file", format!("cannot read {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(
                    "ca_file",
                    format!("{} holds no PEM certificate", path.display()),
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    bad(
                        "ca_file",
                        format!("{}: unusable certificate: {e}", path.display()),
                    )
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(bad(
                    "ca_file",
                    "is not set and no system CA certificate was found; set it to the PEM file of the directory's CA",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorCode::Internal, format!("ldap: TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn check_template(key: &str, template: &str) -> Result<(), Error> {
    if !template.contains(USER_PLACEHOLDER) {
        return Err(bad(
            key,
            format!("{template:?} must contain {USER_PLACEHOLDER} where the username goes"),
        ));
    }
    Ok(())
}

fn check_attribute(key: &str, attr: &str) -> Result<(), Error> {
    // An attribute description (RFC 4512 §2.5): a name or an OID, with options after ';'.
    let ok = !attr.is_empty()
        && attr
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ';'))
        && attr.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(bad(key, format!("{attr:?} is not an attribute name")))
    }
}

impl LdapConfig {
    /// Resolves the relative file paths (`ca_file`, `service_password_file`) against
    /// `base_dir`, the directory of the configuration file that holds them.
    pub fn relative_to(mut self, base_dir: &Path) -> Self {
        for path in [&mut self.ca_file, &mut self.service_password_file]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = base_dir.join(&*path);
            }
        }
        self
    }

    /// Checks every key and reads the files it names (CA, service password).
    pub(crate) fn validate(&self) -> Result<Settings, Error> {
        let (ldaps, host) = check_url(&self.url)?;
        if self.starttls && ldaps {
            return Err(bad(
                "starttls",
                "must be false with an ldaps:// url (the connection is TLS from the start)",
            ));
        }
        let uses_tls = ldaps || self.starttls;
        if self.ca_file.is_some() && !uses_tls {
            return Err(bad(
                "ca_file",
                "is set but the connection is plain ldap://: set `starttls = true` or use an ldaps:// url",
            ));
        }
        let tls = if uses_tls {
            Some(tls_config(self.ca_file.as_deref())?)
        } else {
            if !is_loopback(&host) {
                tracing::warn!(
                    url = %self.url,
                    "LDAP without TLS to a remote host: passwords cross the network in clear; use ldaps:// or starttls = true"
                );
            }
            None
        };

        let template = non_empty("bind_dn_template", &self.bind_dn_template)?;
        let search_keys = [
            ("search_base", self.search_base.is_some()),
            ("search_filter", self.search_filter.is_some()),
            ("service_dn", self.service_dn.is_some()),
            ("service_password", self.service_password.is_some()),
            (
                "service_password_file",
                self.service_password_file.is_some(),
            ),
        ];
        let search_set: Vec<&str> = search_keys
            .iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect();
        let mode = match template {
            Some(template) => {
                if let Some(first) = search_set.first() {
                    return Err(bad(
                        first,
                        "belongs to search mode, but `bind_dn_template` (direct bind) is set too: configure one mode",
                    ));
                }
                check_template("bind_dn_template", &template)?;
                Mode::Direct { template }
            }
            None if search_set.is_empty() => {
                return Err(bad(
                    "bind_dn_template",
                    "is missing: configure either direct bind (`bind_dn_template`) or search then bind (`search_base`, `search_filter`, `service_dn`, `service_password` or `service_password_file`)",
                ));
            }
            None => self.search_mode()?,
        };

        let group = match non_empty("required_group", &self.required_group)? {
            Some(dn) => {
                check_attribute("group_member_attribute", &self.group_member_attribute)?;
                Some(Group {
                    dn,
                    attribute: self.group_member_attribute.clone(),
                    value: self.group_member_value,
                })
            }
            None => None,
        };
        if self.timeout_secs == 0 || self.timeout_secs > MAX_TIMEOUT_SECS {
            return Err(bad(
                "timeout_secs",
                format!("must be 1 to {MAX_TIMEOUT_SECS} seconds"),
            ));
        }
        Ok(Settings {
            url: self.url.clone(),
            starttls: self.starttls,
            tls,
            mode,
            group,
            timeout: Duration::from_secs(self.timeout_secs),
        })
    }

    fn search_mode(&self) -> Result<Mode, Error> {
        let base = non_empty("search_base", &self.search_base)?
            .ok_or_else(|| bad("search_base", "is required in search mode"))?;
        let filter = non_empty("search_filter", &self.search_filter)?
            .ok_or_else(|| bad("search_filter", "is required in search mode"))?;
        check_template("search_filter", &filter)?;
        let parenthesized = filter.starts_with('(') && filter.ends_with(')');
        if !parenthesized || ldap3::parse_filter(filter.replace(USER_PLACEHOLDER, "x")).is_err() {
            return Err(bad(
                "search_filter",
                format!(
                    "{filter:?} is not an LDAP filter (RFC 4515), e.g. (&(objectClass=inetOrgPerson)(uid={{user}}))"
                ),
            ));
        }
        let service_dn = non_empty("service_dn", &self.service_dn)?;
        let password = match (&self.service_password, &self.service_password_file) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "service_password_file",
                    "and `service_password` are both set: keep one",
                ));
            }
            (Some(p), None) => Some(("service_password", Zeroizing::new(p.clone()))),
            (None, Some(path)) => Some((
                "service_password_file",
                read_secret_file("service_password_file", path)?,
            )),
            (None, None) => None,
        };
        let service = match (service_dn, password) {
            (Some(dn), Some((key, password))) => {
                // An empty password would make the service bind an "unauthenticated bind",
                // which some directories accept as anonymous.
                if password.is_empty() {
                    return Err(bad(key, "is empty"));
                }
                Some((dn, password))
            }
            (Some(_), None) => {
                return Err(bad(
                    "service_dn",
                    "is set without `service_password` or `service_password_file`",
                ));
            }
            (None, Some((key, _))) => {
                return Err(bad(key, "is set without `service_dn`"));
            }
            (None, None) => None,
        };
        Ok(Mode::Search {
            base,
            filter,
            service,
        })
    }
}
