//! The `X509` login mechanism: the device proves possession of a key certified by one of the
//! configured certificate authorities, as an enterprise PKI issues them.
//!
//! The client's initial response (PROTOCOL.md §9.2, "The X509 mechanism") is
//! `{ "chain": [bstr], "sig": bstr }`: the end-entity certificate, then intermediates, and a
//! signature by the certificate's key over
//! `label("siren/v1/x509-auth") || channel_binding || device_key || var(uid)`
//! ([`siren_proto::transcript::x509_auth`]). The handshake hash and the DEK are in the signed
//! bytes, so a captured proof is worthless in any other session.
//!
//! The server ([`CertMechanism`]):
//!
//! 1. verifies the chain to a configured CA with `rustls-webpki` (ring), for client
//!    authentication (an extended key usage, if present, must include `clientAuth`), at the
//!    current time; CRLs are not consulted;
//! 2. maps the certificate to a user of this server ([`IdentityMode`]): a SAN `rfc822Name`
//!    `user@server` whose domain is this server's name (the default), or the subject CN as the
//!    bare username;
//! 3. verifies the signature with the certificate's key: ECDSA P-256 with SHA-256 or P-384 with
//!    SHA-384 (DER signatures), or Ed25519 (64 bytes).
//!
//! Every refusal is logged with its own reason ([`Reason`], `tracing::info!`); the client gets
//! the same `AuthStep::Failure` whatever the reason.
//!
//! Configuration, as `sirend.toml` selects it (`ca_file` is relative to the configuration
//! file's directory):
//!
//! ```toml
//! [auth]
//! mechanisms = ["X509", "PLAIN"]
//! [auth.options.X509]
//! ca_file = "ca.pem"        # PEM, one or more CA certificates
//! identity = "san_email"    # or "cn"
//! ```
//!
//! The client side is `siren login --cert CERT.pem --key KEY.pem` (`siren-client`).
//! The `testing` feature adds the `testing` module: a small test PKI made with rcgen.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use serde::Deserialize;
use siren_api::auth::{AuthContext, AuthExchange, AuthMechanism, AuthStep};
use siren_api::{Error, ErrorCode, ServerName, Uid, Username};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

mod wire;
pub use wire::{MAX_CHAIN, X509Response};

#[cfg(feature = "testing")]
pub mod testing;

/// The mechanism's name on the wire.
pub const MECHANISM: &str = "X509";

/// Algorithms accepted for the proof-of-possession signature.
const PROOF_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
    webpki::ring::ED25519,
];

/// `[auth.options.X509]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// The trusted CA certificates (PEM, one or more); relative to the configuration file's
    /// directory.
    pub ca_file: PathBuf,
    /// How a certificate names its user.
    #[serde(default)]
    pub identity: IdentityMode,
}

/// How a certificate names the user it belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityMode {
    /// A subjectAltName `rfc822Name` (e-mail address) `user@server` whose domain is this
    /// server's name; exactly one user may be named this way.
    #[default]
    SanEmail,
    /// The subject's common name (exactly one) is the bare username.
    Cn,
}

/// Why a login was refused (logged; never sent to the client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The response is not `{chain, sig}` in the CBOR profile, or a certificate does not parse.
    Malformed(String),
    /// The certificate (or one in its chain) has expired.
    Expired,
    /// The certificate (or one in its chain) is not valid yet.
    NotYetValid,
    /// The chain does not lead to a configured CA.
    UnknownIssuer,
    /// A signature in the chain does not verify: an altered certificate, or one issued by a CA
    /// that bears a trusted CA's name but not its key.
    BadChainSignature,
    /// The chain is invalid for another reason (not for client authentication, a CA used as
    /// end entity, a bad signature in the chain, …).
    InvalidChain(String),
    /// The certificate names no usable user (no e-mail SAN or CN that is a valid username).
    NoIdentity,
    /// The certificate names a user of another server (this domain).
    OtherDomain(String),
    /// The certificate names several users of this server.
    AmbiguousIdentity,
    /// The certificate's key is of a type not accepted for the proof.
    UnsupportedKey,
    /// The proof does not verify with the certificate's key (wrong key, other session, other
    /// device key or other user).
    BadSignature,
}

impl Reason {
    /// A short stable name, logged as `reason`.
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Malformed(_) => "malformed",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::BadChainSignature => "bad_chain_signature",
            Reason::InvalidChain(_) => "invalid_chain",
            Reason::NoIdentity => "no_identity",
            Reason::OtherDomain(_) => "other_domain",
            Reason::AmbiguousIdentity => "ambiguous_identity",
            Reason::UnsupportedKey => "unsupported_key",
            Reason::BadSignature => "bad_signature",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Malformed(m) => write!(f, "malformed response: {m}"),
            Reason::Expired => f.write_str("certificate expired"),
            Reason::NotYetValid => f.write_str("certificate not valid yet"),
            Reason::UnknownIssuer => f.write_str("certificate not issued by a configured CA"),
            Reason::BadChainSignature => {
                f.write_str("a signature in the certificate chain does not verify")
            }
            Reason::InvalidChain(m) => write!(f, "invalid certificate chain: {m}"),
            Reason::NoIdentity => f.write_str("certificate names no usable user"),
            Reason::OtherDomain(d) => write!(f, "certificate names a user of {d}"),
            Reason::AmbiguousIdentity => f.write_str("certificate names several users"),
            Reason::UnsupportedKey => f.write_str("certificate key type not accepted"),
            Reason::BadSignature => f.write_str("proof of possession does not verify"),
        }
    }
}

/// A refused login: why, and the user the certificate names (if it names one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub reason: Reason,
    /// The user the certificate names, for the host's per-account limit.
    pub attempted: Option<Username>,
}

/// The `X509` mechanism over a set of trusted CAs.
pub struct CertMechanism {
    inner: Arc<Inner>,
}

struct Inner {
    server: ServerName,
    anchors: Vec<TrustAnchor<'static>>,
    identity: IdentityMode,
}

impl CertMechanism {
    /// Reads the CA file (`config.ca_file`, relative to `base_dir`) and builds the mechanism for
    /// `server`. Errors name the file and what is wrong with it.
    pub fn new(config: &CertConfig, base_dir: &Path, server: ServerName) -> Result<Self, Error> {
        let path = base_dir.join(&config.ca_file);
        let bad = |what: String| {
            Error::new(
                ErrorCode::Internal,
                format!("X509 CA file {}: {what}", path.display()),
            )
        };
        let pem = std::fs::read(&path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        let mut anchors = Vec::new();
        for (i, cert) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let cert = cert.map_err(|e| bad(format!("invalid PEM: {e}")))?;
            let anchor = webpki::anchor_from_trusted_cert(&cert)
                .map_err(|e| bad(format!("certificate {} is not usable as a CA: {e}", i + 1)))?;
            anchors.push(anchor.to_owned());
        }
        if anchors.is_empty() {
            return Err(bad("no CERTIFICATE in it (expected PEM)".into()));
        }
        Ok(CertMechanism {
            inner: Arc::new(Inner {
                server,
                anchors,
                identity: config.identity,
            }),
        })
    }

    /// How many CA certificates are trusted.
    pub fn authorities(&self) -> usize {
        self.inner.anchors.len()
    }

    /// Checks one response (the `{chain, sig}` map) against the login context, at the current
    /// time. This is what the exchange does, with the reason kept.
    pub fn check(&self, ctx: &AuthContext, data: &[u8]) -> Result<Username, Refused> {
        self.inner.check(ctx, data)
    }
}

impl AuthMechanism for CertMechanism {
    fn name(&self) -> &str {
        MECHANISM
    }

    fn begin(&self, ctx: AuthContext) -> Box<dyn AuthExchange> {
        Box::new(CertExchange {
            inner: self.inner.clone(),
            ctx,
            asked: false,
        })
    }
}

struct CertExchange {
    inner: Arc<Inner>,
    ctx: AuthContext,
    asked: bool,
}

#[async_trait]
impl AuthExchange for CertExchange {
    async fn step(&mut self, response: &[u8]) -> Result<AuthStep, Error> {
        if response.is_empty() && !self.asked {
            // No initial response: ask for it (RFC 4422 empty challenge).
            self.asked = true;
            return Ok(AuthStep::Challenge(Vec::new()));
        }
        match self.inner.check(&self.ctx, response) {
            Ok(user) => {
                tracing::debug!(%user, peer = ?self.ctx.peer, "X509 login accepted");
                Ok(AuthStep::Success(user))
            }
            Err(Refused { reason, attempted }) => {
                tracing::info!(
                    reason = reason.name(),
                    user = attempted.as_ref().map(tracing::field::display),
                    peer = ?self.ctx.peer,
                    "X509 login refused: {reason}"
                );
                Ok(AuthStep::Failure { attempted })
            }
        }
    }
}

impl Inner {
    fn check(&self, ctx: &AuthContext, data: &[u8]) -> Result<Username, Refused> {
        let refuse = |reason, attempted: Option<&Username>| Refused {
            reason,
            attempted: attempted.cloned(),
        };
        let response =
            X509Response::decode(data).map_err(|e| refuse(Reason::Malformed(e), None))?;
        let (ee_der, intermediates) = match response.chain.split_first() {
            Some((ee, rest)) => (CertificateDer::from(ee.as_slice()), rest),
            None => return Err(refuse(Reason::Malformed("empty chain".into()), None)),
        };
        let ee = EndEntityCert::try_from(&ee_der).map_err(|e| {
            refuse(
                Reason::Malformed(format!("end-entity certificate: {e}")),
                None,
            )
        })?;
        let identity = user_named(&ee_der, self.identity, &self.server);

        let intermediates: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            UnixTime::now(),
            KeyUsage::client_auth(),
            None,
            None,
        )
        // A name from a certificate whose chain does not verify is anyone's to write: it is not
        // reported as the account attempted, so forged certificates cannot use up a real user's
        // per-account login limit.
        .map_err(|e| refuse(chain_reason(e), None))?;

        let user = identity.map_err(|reason| refuse(reason, None))?;
        let uid = Uid::new(user.clone(), self.server.clone());
        let signed =
            siren_proto::transcript::x509_auth(&ctx.channel_binding, &ctx.device_key, &uid);
        let mut any_alg_fits = false;
        for alg in PROOF_ALGS {
            match ee.verify_signature(*alg, &signed, &response.sig) {
                Ok(()) => return Ok(user),
                Err(webpki::Error::UnsupportedSignatureAlgorithmForPublicKeyContext(_)) => {}
                Err(_) => any_alg_fits = true,
            }
        }
        let reason = if any_alg_fits {
            Reason::BadSignature
        } else {
            Reason::UnsupportedKey
        };
        Err(refuse(reason, Some(&user)))
    }
}

fn chain_reason(e: webpki::Error) -> Reason {
    match e {
        webpki::Error::CertExpired { .. } => Reason::Expired,
        webpki::Error::CertNotValidYet { .. } => Reason::NotYetValid,
        webpki::Error::UnknownIssuer => Reason::UnknownIssuer,
        webpki::Error::InvalidSignatureForPublicKey => Reason::BadChainSignature,
        other => Reason::InvalidChain(other.to_string()),
    }
}

/// The user of `server` that the certificate names, per `mode`.
fn user_named(der: &[u8], mode: IdentityMode, server: &ServerName) -> Result<Username, Reason> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Reason::Malformed(format!("end-entity certificate: {e}")))?;
    match mode {
        IdentityMode::SanEmail => {
            let san = cert
                .subject_alternative_name()
                .map_err(|e| Reason::Malformed(format!("subjectAltName: {e}")))?;
            let mut users = BTreeSet::new();
            let mut other_domain = None;
            let emails = san
                .iter()
                .flat_map(|ext| ext.value.general_names.iter())
                .filter_map(|name| match name {
                    GeneralName::RFC822Name(email) => Some(*email),
                    _ => None,
                });
            for email in emails {
                let Some((local, domain)) = email.rsplit_once('@') else {
                    continue;
                };
                match ServerName::parse(domain) {
                    Ok(d) if &d == server => {
                        if let Ok(user) = Username::parse(local) {
                            users.insert(user);
                        }
                    }
                    _ => {
                        other_domain.get_or_insert_with(|| domain.to_owned());
                    }
                }
            }
            let mut users = users.into_iter();
            match (users.next(), users.next(), other_domain) {
                (Some(user), None, _) => Ok(user),
                (Some(_), Some(_), _) => Err(Reason::AmbiguousIdentity),
                (None, _, Some(domain)) => Err(Reason::OtherDomain(domain)),
                (None, _, None) => Err(Reason::NoIdentity),
            }
        }
        IdentityMode::Cn => {
            let mut cns = cert.subject().iter_common_name();
            match (cns.next(), cns.next()) {
                (Some(cn), None) => cn
                    .as_str()
                    .ok()
                    .and_then(|s| Username::parse(s).ok())
                    .ok_or(Reason::NoIdentity),
                (Some(_), Some(_)) => Err(Reason::AmbiguousIdentity),
                (None, _) => Err(Reason::NoIdentity),
            }
        }
    }
}
