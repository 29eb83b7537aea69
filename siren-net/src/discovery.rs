//! DNS discovery of Siren servers (PROTOCOL.md §4), through `hickory-resolver`.
//!
//! A server `alpha.test` publishes where it listens and which key it holds:
//!
//! ```text
//! _siren._tcp.alpha.test.   SRV  10 0 7453 siren1.alpha.test.
//! _siren-key.alpha.test.    TXT  "v=siren1; k=<base64 SEK>"
//! ```
//!
//! [`discover`] asks for both at once and returns the targets to try, in order, and the published
//! keys; [`connect_any`] then resolves each target's A/AAAA records through the same resolver and
//! connects to the first that answers. The rules:
//!
//! * **Targets** ([`lookup_targets`]). SRV records are tried by ascending priority; within one
//!   priority, in the weighted random order of RFC 2782 ([`order_srv`]). A target of `.` means
//!   "no Siren service at this domain" ([`DiscoveryError::ServiceUnavailable`]): there is no
//!   fallback then. When the name has **no SRV record at all** (NXDOMAIN, or the name exists
//!   without SRV data), the single target is the domain itself on the default port
//!   [`DEFAULT_PORT`] (7453), the rule of RFC 6120 §3.2.2 for XMPP; [`Discovered::via_srv`] says
//!   which case applied. Errors of the lookup itself (timeout, SERVFAIL, unreachable nameserver)
//!   never fall back: they are reported.
//! * **Keys** ([`lookup_keys`], [`parse_key_txt`]). Every TXT record at `_siren-key.<domain>` is
//!   read (its character-strings joined). Records of another version (`v=siren2`, …) are skipped;
//!   a malformed `v=siren1` record is an error, not skipped, so a broken zone is noticed. During a
//!   rotation a server publishes two keys; more than two distinct keys is refused. No key at all
//!   is [`DiscoveryError::NoKeyRecord`]: without a SEK no handshake can start.
//! * **Trust.** DNS here is unauthenticated (no DNSSEC validation): the keys found are
//!   candidates for a first pin or a comparison with the pin (§4), never a reason to replace one.
//! * **Connecting** ([`connect_any`]). Each target's addresses are tried in the order the
//!   resolver returns them, each connection attempt limited by the caller's timeout; the first TCP
//!   connection that succeeds wins, and every failure is kept for the error message.
//!   [`connect_within`] does the same within [`ConnectLimits`]: only the first targets, a bounded
//!   number of attempts, and no connection to an address that is not public (loopback, private,
//!   link-local, …) unless allowed. A server following a peer's DNS uses it, so a hostile zone
//!   cannot point it at its own network (PROTOCOL.md §17).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig as HickoryConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use rand_core::Rng;
use serde::Deserialize;
use siren_api::ServerName;
use siren_proto::keys::{KeyError, SekPublic};
use tokio::net::TcpStream;

/// The port used when a domain publishes no SRV record (PROTOCOL.md §4).
pub const DEFAULT_PORT: u16 = 7453;
/// The owner-name prefix of the SRV records: `_siren._tcp.<domain>`.
pub const SRV_PREFIX: &str = "_siren._tcp";
/// The owner-name prefix of the key TXT records: `_siren-key.<domain>`.
pub const KEY_PREFIX: &str = "_siren-key";
/// The version tag a key record starts with: `v=siren1`.
pub const KEY_VERSION: &str = "siren1";
/// The most distinct keys a domain may publish at once (the old and the new one, during a
/// rotation).
pub const MAX_KEYS: usize = 2;

/// Which nameservers to ask, from the `[dns]`-style section of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResolverConfig {
    /// Nameservers as `ip:port`, each asked over UDP and TCP. Empty (the default): the system's
    /// `/etc/resolv.conf`.
    pub nameservers: Vec<SocketAddr>,
    /// How long one DNS lookup may take in total, retries included, in seconds (default 5, at
    /// least 1).
    pub timeout_secs: u64,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        ResolverConfig {
            nameservers: Vec::new(),
            timeout_secs: 5,
        }
    }
}

/// Why discovery or connecting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The resolver could not be set up (bad configuration, unreadable `/etc/resolv.conf`).
    #[error("DNS resolver configuration: {0}")]
    Config(String),
    /// No nameserver answered in time (none reachable, or all too slow).
    #[error("DNS lookup of {name} timed out after {after:?} (is the nameserver reachable?)")]
    Timeout {
        /// The name looked up.
        name: String,
        /// The limit that passed.
        after: Duration,
    },
    /// The lookup failed for another reason: SERVFAIL, REFUSED, a connection error.
    #[error("DNS lookup of {name} failed: {source}")]
    Dns {
        /// The name looked up.
        name: String,
        /// The resolver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The domain's SRV record has the target `.`: it explicitly offers no Siren service.
    #[error("{domain} runs no Siren server (its SRV record's target is \".\")")]
    ServiceUnavailable {
        /// The domain.
        domain: ServerName,
    },
    /// No `v=siren1` TXT record at `_siren-key.<domain>`.
    #[error("no Siren key in DNS: {}", if *.nxdomain { format!("{name} does not exist") } else { format!("no v={KEY_VERSION} TXT record at {name}") })]
    NoKeyRecord {
        /// The name looked up (`_siren-key.<domain>.`).
        name: String,
        /// The name does not exist at all (NXDOMAIN), rather than existing without a key.
        nxdomain: bool,
    },
    /// A `v=siren1` TXT record is malformed.
    #[error("bad Siren key record at {name} ({text:?}): {source}")]
    BadKeyRecord {
        /// The name looked up.
        name: String,
        /// The record's text (lossy UTF-8).
        text: String,
        /// What is wrong with it.
        #[source]
        source: KeyTxtError,
    },
    /// More distinct keys than a rotation allows.
    #[error("{name} publishes {count} different Siren keys; at most {MAX_KEYS} are allowed")]
    TooManyKeys {
        /// The name looked up.
        name: String,
        /// How many distinct keys it has.
        count: usize,
    },
    /// No target accepted a TCP connection.
    #[error("could not connect to any target: {}", fmt_failures(.failures))]
    Unreachable {
        /// Each target or address that was tried, and why it failed.
        failures: Vec<TargetFailure>,
    },
}

fn fmt_failures(failures: &[TargetFailure]) -> String {
    if failures.is_empty() {
        return "no targets".to_owned();
    }
    failures
        .iter()
        .map(|f| format!("{} ({})", f.target, f.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// One failed attempt of [`connect_any`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFailure {
    /// The target (or, once resolved, the address) that was tried.
    pub target: String,
    /// Why it failed.
    pub reason: String,
    /// What kind of failure it was.
    pub kind: FailureKind,
}

/// The kinds of [`TargetFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// DNS answered that the target's name has no address.
    NoAddress,
    /// The target's name could not be looked up (timeout, SERVFAIL, …).
    Lookup,
    /// The address is not public and [`ConnectLimits::allow_non_public`] is off: no connection
    /// was attempted.
    NotPublic,
    /// Beyond [`ConnectLimits::max_targets`] or [`ConnectLimits::max_attempts`]: not tried.
    NotTried,
    /// A TCP connection was attempted and failed (refused, timed out, unreachable).
    Connect,
}

/// What is wrong with a key TXT record ([`parse_key_txt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyTxtError {
    /// The record does not start with a `v=` pair.
    #[error("the record must start with v={KEY_VERSION}")]
    MissingVersion,
    /// The record is for another version of the protocol.
    #[error("unknown version v={0}")]
    UnknownVersion(String),
    /// No `k=` pair.
    #[error("no k= pair")]
    MissingKey,
    /// Two `k=` pairs in one record (a rotation uses two records).
    #[error("more than one k= pair in one record")]
    DuplicateKey,
    /// A part that is not `name=value`, a second `v=`, or text that is not UTF-8.
    #[error("malformed part {0:?}")]
    Malformed(String),
    /// The `k=` value is not base64 of 32 bytes.
    #[error("k=: {0}")]
    BadKey(#[from] KeyError),
}

/// Parses the text of one key TXT record: `v=siren1; k=<base64 SEK>`.
///
/// Parts are separated by `;`, with optional spaces around each part and around the `=`; empty
/// parts (a trailing `;`) are ignored. The first part must be `v=siren1`
/// ([`KeyTxtError::UnknownVersion`] for another version, so a caller can skip records of a newer
/// protocol); then exactly one `k=` with the standard padded base64 of 32 bytes. Other
/// `name=value` pairs are ignored, as PROTOCOL.md §4 requires.
pub fn parse_key_txt(txt: &str) -> Result<SekPublic, KeyTxtError> {
    let mut parts = txt
        .split(';')
        .map(|p| p.trim_matches([' ', '\t']))
        .filter(|p| !p.is_empty());
    let pair = |part: &str| -> Result<(String, String), KeyTxtError> {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| KeyTxtError::Malformed(part.to_owned()))?;
        let name = name.trim_matches([' ', '\t']);
        if name.is_empty() {
            return Err(KeyTxtError::Malformed(part.to_owned()));
        }
        Ok((name.to_owned(), value.trim_matches([' ', '\t']).to_owned()))
    };
    let first = parts.next().ok_or(KeyTxtError::MissingVersion)?;
    match pair(first) {
        Ok((name, value)) if name == "v" => {
            if value != KEY_VERSION {
                return Err(KeyTxtError::UnknownVersion(value));
            }
        }
        _ => return Err(KeyTxtError::MissingVersion),
    }
    let mut key = None;
    for part in parts {
        let (name, value) = pair(part)?;
        match name.as_str() {
            "v" => return Err(KeyTxtError::Malformed(part.to_owned())),
            "k" => {
                if key.is_some() {
                    return Err(KeyTxtError::DuplicateKey);
                }
                key = Some(SekPublic::from_base64(&value)?);
            }
            _ => {}
        }
    }
    key.ok_or(KeyTxtError::MissingKey)
}

/// A host and port to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// A DNS name without the final dot (or an IP address).
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One SRV record, the input of [`order_srv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Relative weight among records of the same priority.
    pub weight: u16,
    /// The TCP port.
    pub port: u16,
    /// The target host, without the final dot.
    pub target: String,
}

/// Orders SRV records as RFC 2782 says: by ascending priority; within a priority, repeatedly
/// pick one at random with probability proportional to its weight (records of weight 0 placed
/// first, in random order, so they have a small chance only when others weigh more).
///
/// The randomness comes from `rng`, so tests can seed it.
pub fn order_srv<R: Rng + ?Sized>(mut records: Vec<SrvRecord>, rng: &mut R) -> Vec<Target> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    for group in records.chunk_by(|a, b| a.priority == b.priority) {
        let (mut pending, weighted): (Vec<&SrvRecord>, Vec<&SrvRecord>) =
            group.iter().partition(|r| r.weight == 0);
        // "arrange all SRV RRs in any order, except that all those with weight 0 are placed at
        // the beginning": shuffled, so equal zero weights share the load.
        for i in (1..pending.len()).rev() {
            let j = uniform(rng, i as u64) as usize;
            pending.swap(i, j);
        }
        pending.extend(weighted);
        while !pending.is_empty() {
            let sum: u64 = pending.iter().map(|r| u64::from(r.weight)).sum();
            let pick = uniform(rng, sum);
            let mut running = 0;
            let index = pending
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            let chosen = pending.remove(index);
            out.push(Target {
                host: chosen.target.clone(),
                port: chosen.port,
            });
        }
    }
    out
}

/// A uniform number in `0..=max` (`max` is far below 2^64, so the modulo bias is negligible).
fn uniform<R: Rng + ?Sized>(rng: &mut R, max: u64) -> u64 {
    rng.next_u64() % (max + 1)
}

/// A DNS resolver for discovery: `hickory-resolver` with Siren's settings.
///
/// Cheap to clone (clones share the connections and the cache). Answers are cached for their
/// TTL.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    timeout: Duration,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds a resolver: the configured nameservers (UDP, then TCP for truncated answers), or the
    /// system's when none are configured.
    pub fn new(config: &ResolverConfig) -> Result<Self, DiscoveryError> {
        if config.timeout_secs == 0 {
            return Err(DiscoveryError::Config(
                "timeout_secs must be at least 1".to_owned(),
            ));
        }
        let timeout = Duration::from_secs(config.timeout_secs);
        let mut builder = if config.nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| {
                DiscoveryError::Config(format!("cannot read the system resolver settings: {e}"))
            })?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut builder = TokioResolver::builder_with_config(
                HickoryConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            );
            // Explicit nameservers are the whole truth (tests rely on it): no /etc/hosts.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options = builder.options_mut();
        // Two tries, each with half the budget; `lookup` enforces the whole budget on top.
        options.timeout = timeout / 2;
        options.attempts = 2;
        let inner = builder
            .build()
            .map_err(|e| DiscoveryError::Config(e.to_string()))?;
        Ok(Resolver { inner, timeout })
    }

    /// The limit for one lookup.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Looks `name` (fully qualified, with the final dot) up. `Ok(None)` when the answer is
    /// "no such records": `Some(true)` inside means NXDOMAIN, `Some(false)` no data.
    async fn lookup(
        &self,
        name: &str,
        kind: RecordType,
    ) -> Result<Result<Vec<RData>, bool>, DiscoveryError> {
        let answer = tokio::time::timeout(self.timeout, self.inner.lookup(name, kind))
            .await
            .map_err(|_| DiscoveryError::Timeout {
                name: name.to_owned(),
                after: self.timeout,
            })?;
        match answer {
            Ok(lookup) => Ok(Ok(lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == kind)
                .map(|r| r.data.clone())
                .collect())),
            Err(e) => no_records(&e)
                .map(Err)
                .ok_or_else(|| dns_error(name, e, self.timeout)),
        }
    }
}

/// `Some(nxdomain)` when the error only says "there are no such records".
fn no_records(e: &NetError) -> Option<bool> {
    e.is_no_records_found().then(|| e.is_nx_domain())
}

fn dns_error(name: &str, e: NetError, after: Duration) -> DiscoveryError {
    let timed_out = match &e {
        NetError::Timeout => true,
        NetError::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
        _ => false,
    };
    if timed_out {
        DiscoveryError::Timeout {
            name: name.to_owned(),
            after,
        }
    } else {
        DiscoveryError::Dns {
            name: name.to_owned(),
            source: Box::new(e),
        }
    }
}

/// What [`discover`] found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// Where to connect, in the order to try (at least one).
    pub targets: Vec<Target>,
    /// The targets came from SRV records; `false`: the domain has none and the target is the
    /// domain itself on [`DEFAULT_PORT`].
    pub via_srv: bool,
    /// The published SEKs, one or (during a rotation) two, distinct, in no particular order.
    pub keys: Vec<SekPublic>,
}

impl Discovered {
    /// Whether `sek` is among the published keys (compare the pin with this, PROTOCOL.md §4).
    pub fn publishes(&self, sek: &SekPublic) -> bool {
        self.keys.contains(sek)
    }
}

/// Finds a server's targets and keys ([`lookup_targets`] and [`lookup_keys`], asked at the same
/// time). Within a priority the order is randomised with the system's generator; see
/// [`discover_with_rng`] to choose the generator.
pub async fn discover(
    resolver: &Resolver,
    domain: &ServerName,
) -> Result<Discovered, DiscoveryError> {
    discover_with_rng(resolver, domain, &mut siren_proto::os_rng()).await
}

/// [`discover`] with the randomness of the weighted SRV order taken from `rng`.
pub async fn discover_with_rng<R: Rng + ?Sized>(
    resolver: &Resolver,
    domain: &ServerName,
    rng: &mut R,
) -> Result<Discovered, DiscoveryError> {
    let (srv, keys) = tokio::join!(lookup_srv(resolver, domain), lookup_keys(resolver, domain));
    let (targets, via_srv) = srv_targets(domain, srv?, rng)?;
    Ok(Discovered {
        targets,
        via_srv,
        keys: keys?,
    })
}

/// The targets of `domain`, in the order to try them, and whether they came from SRV records
/// (see the module documentation for the fallback rule).
pub async fn lookup_targets<R: Rng + ?Sized>(
    resolver: &Resolver,
    domain: &ServerName,
    rng: &mut R,
) -> Result<(Vec<Target>, bool), DiscoveryError> {
    let srv = lookup_srv(resolver, domain).await?;
    srv_targets(domain, srv, rng)
}

/// The SRV records of `domain`; `None` when there are none.
async fn lookup_srv(
    resolver: &Resolver,
    domain: &ServerName,
) -> Result<Option<Vec<SrvRecord>>, DiscoveryError> {
    let name = format!("{SRV_PREFIX}.{domain}.");
    let Ok(data) = resolver.lookup(&name, RecordType::SRV).await? else {
        return Ok(None);
    };
    let records: Vec<SrvRecord> = data
        .iter()
        .filter_map(|d| match d {
            RData::SRV(srv) => Some(SrvRecord {
                priority: srv.priority,
                weight: srv.weight,
                port: srv.port,
                target: srv
                    .target
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            }),
            _ => None,
        })
        .collect();
    Ok((!records.is_empty()).then_some(records))
}

fn srv_targets<R: Rng + ?Sized>(
    domain: &ServerName,
    srv: Option<Vec<SrvRecord>>,
    rng: &mut R,
) -> Result<(Vec<Target>, bool), DiscoveryError> {
    let Some(records) = srv else {
        let fallback = Target {
            host: domain.as_str().to_owned(),
            port: DEFAULT_PORT,
        };
        return Ok((vec![fallback], false));
    };
    // A target of "." (the root, empty once the final dot is gone): "decidedly not available".
    let usable: Vec<SrvRecord> = records
        .into_iter()
        .filter(|r| !r.target.is_empty())
        .collect();
    if usable.is_empty() {
        return Err(DiscoveryError::ServiceUnavailable {
            domain: domain.clone(),
        });
    }
    Ok((order_srv(usable, rng), true))
}

/// The SEKs `domain` publishes in TXT records at `_siren-key.<domain>` (one, or two during a
/// rotation; distinct, in no particular order). A peer server checks an incoming link's claimed
/// name with this alone (PROTOCOL.md §17).
pub async fn lookup_keys(
    resolver: &Resolver,
    domain: &ServerName,
) -> Result<Vec<SekPublic>, DiscoveryError> {
    let name = format!("{KEY_PREFIX}.{domain}.");
    let data = match resolver.lookup(&name, RecordType::TXT).await? {
        Ok(data) => data,
        Err(nxdomain) => return Err(DiscoveryError::NoKeyRecord { name, nxdomain }),
    };
    let mut keys: Vec<SekPublic> = Vec::new();
    for d in &data {
        let RData::TXT(txt) = d else { continue };
        let bytes: Vec<u8> = txt
            .txt_data
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        let bad = |source| DiscoveryError::BadKeyRecord {
            name: name.clone(),
            text: String::from_utf8_lossy(&bytes).into_owned(),
            source,
        };
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| bad(KeyTxtError::Malformed("not UTF-8".to_owned())))?;
        match parse_key_txt(text) {
            Ok(key) => {
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            // A record for another protocol version: not ours to judge.
            Err(KeyTxtError::UnknownVersion(_)) => {}
            Err(e) => return Err(bad(e)),
        }
    }
    if keys.is_empty() {
        return Err(DiscoveryError::NoKeyRecord {
            name,
            nxdomain: false,
        });
    }
    if keys.len() > MAX_KEYS {
        return Err(DiscoveryError::TooManyKeys {
            name,
            count: keys.len(),
        });
    }
    Ok(keys)
}

/// A TCP connection made by [`connect_any`].
#[derive(Debug)]
pub struct Reached {
    /// The connected socket.
    pub stream: TcpStream,
    /// The target it reached.
    pub target: Target,
    /// The address it connected to.
    pub addr: SocketAddr,
}

/// What [`connect_within`] may try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectLimits {
    /// Only the first this many targets are resolved and tried.
    pub max_targets: usize,
    /// At most this many TCP connections are attempted in all.
    pub max_attempts: usize,
    /// Whether addresses that are not public unicast addresses (loopback, private, link-local,
    /// multicast, unspecified, …: [`crate::address::non_public_reason`]) may be connected to.
    pub allow_non_public: bool,
}

impl ConnectLimits {
    /// No limit: every target, every address (what a client finding its own server uses).
    pub const NONE: ConnectLimits = ConnectLimits {
        max_targets: usize::MAX,
        max_attempts: usize::MAX,
        allow_non_public: true,
    };
}

/// Connects to the first reachable target: each target's host is resolved (A and AAAA, through
/// `resolver`; an IP address is used as it is), and its addresses are tried in order, each
/// attempt limited to `per_attempt`. A target whose name does not resolve is skipped like one
/// that refuses connections. Fails with [`DiscoveryError::Unreachable`], listing every attempt,
/// when none succeeds.
pub async fn connect_any(
    resolver: &Resolver,
    targets: &[Target],
    per_attempt: Duration,
) -> Result<Reached, DiscoveryError> {
    connect_within(resolver, targets, per_attempt, ConnectLimits::NONE).await
}

/// [`connect_any`] within `limits`: targets beyond the first [`ConnectLimits::max_targets`] and
/// attempts beyond [`ConnectLimits::max_attempts`] are not tried, and non-public addresses are
/// refused without a connection unless allowed. Every skipped target or address is listed in
/// the error, with its [`FailureKind`].
pub async fn connect_within(
    resolver: &Resolver,
    targets: &[Target],
    per_attempt: Duration,
    limits: ConnectLimits,
) -> Result<Reached, DiscoveryError> {
    let mut failures = Vec::new();
    let mut attempts = 0;
    for (i, target) in targets.iter().enumerate() {
        if i >= limits.max_targets {
            failures.push(TargetFailure {
                target: target.to_string(),
                reason: format!("not tried: at most {} targets", limits.max_targets),
                kind: FailureKind::NotTried,
            });
            continue;
        }
        let addrs = match resolve_host(resolver, &target.host).await {
            Ok(addrs) => addrs,
            Err((kind, e)) => {
                failures.push(TargetFailure {
                    target: target.to_string(),
                    reason: e.to_string(),
                    kind,
                });
                continue;
            }
        };
        for ip in addrs {
            let addr = SocketAddr::new(ip, target.port);
            let refused = |reason: String, kind| TargetFailure {
                target: format!("{target} at {addr}"),
                reason,
                kind,
            };
            if let (false, Some(why)) = (
                limits.allow_non_public,
                crate::address::non_public_reason(ip),
            ) {
                failures.push(refused(
                    format!("refused: not a public address ({why})"),
                    FailureKind::NotPublic,
                ));
                continue;
            }
            if attempts >= limits.max_attempts {
                failures.push(refused(
                    format!(
                        "not tried: at most {} connection attempts",
                        limits.max_attempts
                    ),
                    FailureKind::NotTried,
                ));
                continue;
            }
            attempts += 1;
            let reason = match tokio::time::timeout(per_attempt, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    return Ok(Reached {
                        stream,
                        target: target.clone(),
                        addr,
                    });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {per_attempt:?}"),
            };
            failures.push(refused(reason, FailureKind::Connect));
        }
    }
    Err(DiscoveryError::Unreachable { failures })
}

/// The addresses of `host`: itself if it is an IP address, else its A/AAAA records.
/// Every address of every target, in the targets' order (each host resolved through
/// `resolver`; a target that does not resolve is left out): the places a client may try when
/// the one it reached is down (several nodes of one server).
pub async fn resolve_all(resolver: &Resolver, targets: &[Target]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for target in targets {
        if let Ok(ips) = resolve_host(resolver, &target.host).await {
            for ip in ips {
                let addr = SocketAddr::new(ip, target.port);
                if !out.contains(&addr) {
                    out.push(addr);
                }
            }
        }
    }
    out
}

async fn resolve_host(
    resolver: &Resolver,
    host: &str,
) -> Result<Vec<IpAddr>, (FailureKind, DiscoveryError)> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let name = format!("{host}.");
    let lookup = tokio::time::timeout(resolver.timeout, resolver.inner.lookup_ip(name.as_str()))
        .await
        .map_err(|_| {
            let e = DiscoveryError::Timeout {
                name: name.clone(),
                after: resolver.timeout,
            };
            (FailureKind::Lookup, e)
        })?;
    match lookup {
        Ok(ips) => {
            let addrs: Vec<IpAddr> = ips.iter().collect();
            if addrs.is_empty() {
                Err((FailureKind::NoAddress, no_address(&name)))
            } else {
                Ok(addrs)
            }
        }
        Err(e) if no_records(&e).is_some() => Err((FailureKind::NoAddress, no_address(&name))),
        Err(e) => Err((FailureKind::Lookup, dns_error(&name, e, resolver.timeout))),
    }
}

fn no_address(name: &str) -> DiscoveryError {
    DiscoveryError::Dns {
        name: name.to_owned(),
        source: "no A or AAAA record".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chacha20::ChaCha20Rng;
    use rand_core::SeedableRng as _;

    const KEY: &str = "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk=";

    fn key() -> SekPublic {
        SekPublic::from_base64(KEY).unwrap()
    }

    #[test]
    fn parses_the_record_protocol_md_shows() {
        assert_eq!(parse_key_txt(&format!("v=siren1; k={KEY}")), Ok(key()));
        // the same with other spacing, a trailing ';', and unknown pairs (ignored)
        for text in [
            format!("v=siren1;k={KEY}"),
            format!("  v = siren1 ;  k = {KEY} ; "),
            format!("v=siren1; x=1; k={KEY}; note=hello world"),
            format!("v=siren1;\tk={KEY};"),
        ] {
            assert_eq!(parse_key_txt(&text), Ok(key()), "{text:?}");
        }
    }

    #[test]
    fn what_admin_rs_prints_parses() {
        // siren-host's `dns_records` writes `"v=siren1; k={sek}"` with the SEK's Display.
        let sek = SekPublic::from_bytes([7; 32]);
        assert_eq!(parse_key_txt(&format!("v=siren1; k={sek}")), Ok(sek));
    }

    #[test]
    fn refuses_bad_records() {
        use KeyTxtError::*;
        let cases: Vec<(String, KeyTxtError)> = vec![
            (String::new(), MissingVersion),
            (" ; ".into(), MissingVersion),
            (format!("k={KEY}; v=siren1"), MissingVersion),
            (format!("k={KEY}"), MissingVersion),
            (format!("hello; k={KEY}"), MissingVersion),
            (
                format!("v=siren2; k={KEY}"),
                UnknownVersion("siren2".into()),
            ),
            (
                format!("v=SIREN1; k={KEY}"),
                UnknownVersion("SIREN1".into()),
            ),
            ("v=siren1".into(), MissingKey),
            ("v=siren1; K=abc".into(), MissingKey),
            (format!("v=siren1; k={KEY}; k={KEY}"), DuplicateKey),
            (
                format!("v=siren1; k={KEY}; k=AAAAkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogk="),
                DuplicateKey,
            ),
            (
                format!("v=siren1; k={KEY}; v=siren1"),
                Malformed("v=siren1".into()),
            ),
            (format!("v=siren1; junk; k={KEY}"), Malformed("junk".into())),
            (format!("v=siren1; =x; k={KEY}"), Malformed("=x".into())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_key_txt(&text), Err(want), "{text:?}");
        }
        // bad base64: wrong length, no padding, URL-safe alphabet, non-canonical trailing bits
        for k in [
            "AAAA",
            "",
            KEY.trim_end_matches('='),
            "pOCSkrZRwni5dyxWn1-puxPZBrRqtoyd-dwrRAn4ogk=",
            "pOCSkrZRwni5dyxWn1+puxPZBrRqtoyd+dwrRAn4ogl=",
        ] {
            let got = parse_key_txt(&format!("v=siren1; k={k}"));
            assert!(matches!(got, Err(BadKey(_))), "{k:?}: {got:?}");
        }
    }

    fn srv(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 7453,
            target: target.into(),
        }
    }

    fn hosts(targets: &[Target]) -> Vec<&str> {
        targets.iter().map(|t| t.host.as_str()).collect()
    }

    #[test]
    fn priorities_come_first_whatever_the_weights() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let records = vec![
            srv(20, 65535, "c"),
            srv(10, 0, "a"),
            srv(30, 1, "d"),
            srv(10, 0, "b"),
        ];
        for _ in 0..200 {
            let order = order_srv(records.clone(), &mut rng);
            let h = hosts(&order);
            assert!(h[..2] == ["a", "b"] || h[..2] == ["b", "a"], "{h:?}");
            assert_eq!(h[2..], ["c", "d"]);
        }
    }

    /// A generator that returns the given numbers, to follow RFC 2782's algorithm step by step.
    struct Script(Vec<u64>);
    impl rand_core::TryRng for Script {
        type Error = std::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(self.try_next_u64()? as u32)
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(self.0.remove(0))
        }
        fn try_fill_bytes(&mut self, _: &mut [u8]) -> Result<(), Self::Error> {
            unimplemented!()
        }
    }

    #[test]
    fn follows_rfc_2782_step_by_step() {
        // weights 0, 3, 1 (running sums 0, 3, 4 once the zero is placed first)
        let records = vec![srv(10, 3, "x"), srv(10, 1, "y"), srv(10, 0, "z")];
        // pick 0 of 0..=4 → "z" (running sum 0 ≥ 0); then 0..=4 over x,y: 4 → "y"; then x.
        let order = order_srv(records.clone(), &mut Script(vec![0, 4, 0]));
        assert_eq!(hosts(&order), ["z", "y", "x"]);
        // 1 → first running sum ≥ 1 is x (3); then over z(0), y(1): 0 → z; then y.
        let order = order_srv(records.clone(), &mut Script(vec![1, 0, 0]));
        assert_eq!(hosts(&order), ["x", "z", "y"]);
        // 3 → x, 1 → y, z
        let order = order_srv(records, &mut Script(vec![3, 1, 0]));
        assert_eq!(hosts(&order), ["x", "y", "z"]);
    }

    #[test]
    fn weights_shape_the_first_choice() {
        let mut rng = ChaCha20Rng::seed_from_u64(2782);
        let records = vec![
            srv(10, 60, "heavy"),
            srv(10, 20, "light"),
            srv(10, 0, "zero"),
        ];
        let trials = 20_000;
        let mut first = std::collections::HashMap::<String, u32>::new();
        for _ in 0..trials {
            let order = order_srv(records.clone(), &mut rng);
            assert_eq!(order.len(), 3);
            *first.entry(order[0].host.clone()).or_default() += 1;
        }
        let share = |h: &str| f64::from(first.get(h).copied().unwrap_or(0)) / f64::from(trials);
        // expected 60/81, 20/81, 1/81 (the zero-weight record wins only on a draw of 0)
        assert!((share("heavy") - 60.0 / 81.0).abs() < 0.02, "{first:?}");
        assert!((share("light") - 20.0 / 81.0).abs() < 0.02, "{first:?}");
        assert!(share("zero") < 0.03, "{first:?}");
    }

    #[test]
    fn equal_zero_weights_share_the_load() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let records = vec![srv(0, 0, "a"), srv(0, 0, "b"), srv(0, 0, "c")];
        let mut first = std::collections::HashMap::<String, u32>::new();
        for _ in 0..3000 {
            *first
                .entry(order_srv(records.clone(), &mut rng)[0].host.clone())
                .or_default() += 1;
        }
        for h in ["a", "b", "c"] {
            let n = first.get(h).copied().unwrap_or(0);
            assert!((850..1150).contains(&n), "{first:?}");
        }
    }

    #[test]
    fn no_srv_falls_back_to_the_domain_and_dot_means_no_service() {
        let domain = ServerName::parse("alpha.test").unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let (t, via_srv) = srv_targets(&domain, None, &mut rng).unwrap();
        assert_eq!(
            t,
            [Target {
                host: "alpha.test".into(),
                port: DEFAULT_PORT
            }]
        );
        assert!(!via_srv);
        let got = srv_targets(&domain, Some(vec![srv(0, 0, "")]), &mut rng);
        assert!(matches!(
            got,
            Err(DiscoveryError::ServiceUnavailable { .. })
        ));
        // "." beside real targets is dropped
        let (t, via_srv) =
            srv_targets(&domain, Some(vec![srv(0, 0, ""), srv(5, 0, "s")]), &mut rng).unwrap();
        assert_eq!(hosts(&t), ["s"]);
        assert!(via_srv);
    }

    #[test]
    fn config_defaults_and_refuses_unknown_keys() {
        let c: ResolverConfig = toml::from_str("").unwrap();
        assert_eq!(c, ResolverConfig::default());
        assert_eq!(c.timeout_secs, 5);
        let c: ResolverConfig =
            toml::from_str("nameservers = [\"127.0.0.1:5353\"]\ntimeout_secs = 2").unwrap();
        assert_eq!(c.nameservers, ["127.0.0.1:5353".parse().unwrap()]);
        let e = toml::from_str::<ResolverConfig>("nameserver = []").unwrap_err();
        assert!(e.to_string().contains("nameserver"), "{e}");
        let zero = ResolverConfig {
            timeout_secs: 0,
            ..ResolverConfig::default()
        };
        assert!(matches!(
            Resolver::new(&zero),
            Err(DiscoveryError::Config(_))
        ));
    }

    #[test]
    fn target_display() {
        let t = Target {
            host: "::1".into(),
            port: 7453,
        };
        assert_eq!(t.to_string(), "[::1]:7453");
    }
}
