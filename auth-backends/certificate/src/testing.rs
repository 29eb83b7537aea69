//! A small test PKI made with rcgen (feature `testing`): CAs, intermediates, user certificates
//! with their PKCS#8 keys, proofs, and [`write_test_pki`] for tests that run real processes.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use siren_auth_certificate::testing::{KeyKind, write_test_pki};
//! let uid = siren_api::Uid::parse("alice@alpha.test")?;
//! let files = write_test_pki(std::path::Path::new("/tmp/pki"), &uid, KeyKind::EcdsaP256)?;
//! // sirend: [auth.options.X509] ca_file = files.ca
//! // siren:  siren login --cert files.cert --key files.key
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SigningKey as _,
};
use siren_api::Uid;

use crate::X509Response;

/// A key type for test certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA on P-256 (signatures with SHA-256, DER-encoded).
    EcdsaP256,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    fn generate(self) -> Result<KeyPair, rcgen::Error> {
        KeyPair::generate_for(match self {
            KeyKind::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
        })
    }
}

/// What to put in a user certificate.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// subjectAltName e-mail addresses.
    pub emails: Vec<String>,
    /// The subject common name.
    pub cn: Option<String>,
    /// The key type.
    pub key: KeyKind,
    /// Start of validity, in days from now (negative: in the past).
    pub valid_from_days: i64,
    /// End of validity, in days from now.
    pub valid_until_days: i64,
    /// The extended key usage: `clientAuth` if true, `serverAuth` only if false.
    pub client_auth: bool,
}

impl CertSpec {
    /// A certificate for the e-mail address `email`, valid from yesterday for a year.
    pub fn email(email: &str, key: KeyKind) -> Self {
        CertSpec {
            emails: vec![email.to_owned()],
            cn: None,
            key,
            valid_from_days: -1,
            valid_until_days: 365,
            client_auth: true,
        }
    }
}

/// Sets the validity to `from_days` .. `until_days` days from now.
fn set_validity(params: &mut CertificateParams, from_days: i64, until_days: i64) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let at = |days: i64| {
        let secs = (now as i64 + days * 86_400).max(0) as u64;
        rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(secs)
    };
    params.not_before = at(from_days);
    params.not_after = at(until_days);
}

/// A certificate authority (a root, or an intermediate under one).
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// This CA's certificate, DER.
    pub der: Vec<u8>,
    /// This CA's certificate, PEM.
    pub pem: String,
    /// For an intermediate: its certificate then the intermediates above it (not the root),
    /// DER and PEM.
    chain: Vec<(Vec<u8>, String)>,
}

impl TestCa {
    /// A self-signed root CA (ECDSA P-256) called `name`.
    pub fn new(name: &str) -> Result<TestCa, rcgen::Error> {
        let key = KeyKind::EcdsaP256.generate()?;
        let params = ca_params(name);
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
            chain: Vec::new(),
        })
    }

    /// An intermediate CA called `name`, issued by this CA.
    pub fn intermediate(&self, name: &str) -> Result<TestCa, rcgen::Error> {
        let key = KeyKind::EcdsaP256.generate()?;
        let params = ca_params(name);
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![(cert.der().to_vec(), cert.pem())];
        chain.extend(self.chain.iter().cloned());
        Ok(TestCa {
            der: cert.der().to_vec(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
            chain,
        })
    }

    /// Issues a user certificate.
    pub fn issue(&self, spec: &CertSpec) -> Result<TestCert, rcgen::Error> {
        let key = spec.key.generate()?;
        let mut params = CertificateParams::default();
        set_validity(&mut params, spec.valid_from_days, spec.valid_until_days);
        if let Some(cn) = &spec.cn {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        for email in &spec.emails {
            params
                .subject_alt_names
                .push(SanType::Rfc822Name(email.clone().try_into()?));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if spec.client_auth {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut chain = vec![cert.der().to_vec()];
        let mut chain_pem = cert.pem();
        for (der, pem) in &self.chain {
            chain.push(der.clone());
            chain_pem.push_str(pem);
        }
        Ok(TestCert {
            chain,
            chain_pem,
            key_pem: key.serialize_pem(),
            key,
        })
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, -30, 3650);
    params
}

/// A user certificate with its key.
pub struct TestCert {
    /// The chain to send: this certificate, then the issuing intermediates (DER).
    pub chain: Vec<Vec<u8>>,
    /// The same chain as PEM (what `siren login --cert` reads).
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM (what `siren login --key` reads).
    pub key_pem: String,
    key: KeyPair,
}

impl TestCert {
    /// Signs `msg` with the certificate's key (ECDSA: DER; Ed25519: 64 bytes).
    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key.sign(msg)
    }

    /// The initial response that logs `uid` in over the session with this channel binding and
    /// device key.
    pub fn response(
        &self,
        channel_binding: &[u8; 32],
        device_key: &[u8; 32],
        uid: &Uid,
    ) -> Result<Vec<u8>, rcgen::Error> {
        let msg = siren_proto::transcript::x509_auth(channel_binding, device_key, uid);
        Ok(X509Response {
            chain: self.chain.clone(),
            sig: self.sign(&msg)?,
        }
        .encode())
    }
}

/// Files written by [`write_test_pki`].
#[derive(Debug, Clone)]
pub struct TestPkiFiles {
    /// The root CA certificate (PEM): `[auth.options.X509] ca_file`.
    pub ca: PathBuf,
    /// The user's certificate chain (PEM): `siren login --cert`.
    pub cert: PathBuf,
    /// The user's private key (PKCS#8 PEM): `siren login --key`.
    pub key: PathBuf,
}

/// Writes `ca.pem`, `<user>.pem` and `<user>.key` into `dir` (created if missing): a root CA and
/// a certificate for `uid` naming it as SAN e-mail, valid from yesterday for a year, issued
/// through one intermediate (so the chain file holds two certificates).
pub fn write_test_pki(
    dir: &Path,
    uid: &Uid,
    key: KeyKind,
) -> Result<TestPkiFiles, Box<dyn std::error::Error + Send + Sync>> {
    let root = TestCa::new("Siren Test Root CA")?;
    let intermediate = root.intermediate("Siren Test Issuing CA")?;
    let cert = intermediate.issue(&CertSpec::email(&uid.to_string(), key))?;
    std::fs::create_dir_all(dir)?;
    let files = TestPkiFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{}.pem", uid.user())),
        key: dir.join(format!("{}.key", uid.user())),
    };
    std::fs::write(&files.ca, &root.pem)?;
    std::fs::write(&files.cert, &cert.chain_pem)?;
    std::fs::write(&files.key, &cert.key_pem)?;
    Ok(files)
}
