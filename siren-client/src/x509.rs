//! Client certificates for the `X509` login mechanism (PROTOCOL.md §9.2): a PEM certificate
//! chain and its private key (PKCS#8, or SEC1 for P-256), and the response that proves this
//! device holds the key, bound to one session and one DEK.

use std::path::Path;

use anyhow::{Context as _, bail};
// One `pkcs8` and one `signature` crate serve both key types.
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use p256::ecdsa::signature::Signer as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Serialize, Serializer};
use siren_api::Uid;

/// The mechanism's name on the wire.
pub const MECHANISM: &str = siren_client_session::X509_MECHANISM;

/// A certificate chain and the end-entity certificate's private key.
pub struct ClientCert {
    chain: Vec<Vec<u8>>,
    key: CertKey,
}

enum CertKey {
    Ed25519(ed25519_dalek::SigningKey),
    P256(p256::ecdsa::SigningKey),
}

impl std::fmt::Debug for ClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = match self.key {
            CertKey::Ed25519(_) => "Ed25519",
            CertKey::P256(_) => "ECDSA P-256",
        };
        write!(
            f,
            "ClientCert({} certificates, {key} key)",
            self.chain.len()
        )
    }
}

impl ClientCert {
    /// Reads the chain (PEM: the device's certificate first, then intermediates) and the key
    /// (PEM: PKCS#8 Ed25519 or P-256, or SEC1 P-256).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<ClientCert> {
        let cert_pem =
            std::fs::read(cert).with_context(|| format!("cannot read {}", cert.display()))?;
        let key_pem =
            std::fs::read(key).with_context(|| format!("cannot read {}", key.display()))?;
        ClientCert::from_pem(&cert_pem, &key_pem)
            .with_context(|| format!("{} with {}", cert.display(), key.display()))
    }

    /// Like [`ClientCert::load`], from the files' contents.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<ClientCert> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .context("the certificate file is not valid PEM")?;
        let Some(end_entity) = chain.first() else {
            bail!("the certificate file holds no CERTIFICATE");
        };
        let key = match PrivateKeyDer::from_pem_slice(key_pem)
            .context("the key file holds no private key in PEM")?
        {
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                match ed25519_dalek::SigningKey::from_pkcs8_der(der) {
                    Ok(k) => CertKey::Ed25519(k),
                    Err(_) => CertKey::P256(
                        p256::ecdsa::SigningKey::from_pkcs8_der(der)
                            .ok()
                            .context("the key is neither Ed25519 nor ECDSA P-256")?,
                    ),
                }
            }
            PrivateKeyDer::Sec1(der) => CertKey::P256(
                p256::SecretKey::from_sec1_der(der.secret_sec1_der())
                    .ok()
                    .context("the EC key is not on P-256")?
                    .into(),
            ),
            _ => bail!("only Ed25519 and ECDSA P-256 keys are supported"),
        };
        // An early, clear error for a key that does not go with the certificate (the server
        // checks properly; any SubjectPublicKeyInfo holds the raw public key bytes).
        let public = match &key {
            CertKey::Ed25519(k) => k.verifying_key().to_bytes().to_vec(),
            CertKey::P256(k) => k.verifying_key().to_sec1_point(false).as_bytes().to_vec(),
        };
        if !end_entity.windows(public.len()).any(|w| w == public) {
            bail!("the key does not belong to the first certificate of the chain");
        }
        Ok(ClientCert { chain, key })
    }
}

impl siren_client_session::CertificateLogin for ClientCert {
    fn response(&self, channel_binding: &[u8; 32], device_key: &[u8; 32], uid: &Uid) -> Vec<u8> {
        let msg = siren_proto::transcript::x509_auth(channel_binding, device_key, uid);
        let sig = match &self.key {
            CertKey::Ed25519(k) => k.sign(&msg).to_bytes().to_vec(),
            CertKey::P256(k) => {
                let sig: p256::ecdsa::Signature = k.sign(&msg);
                sig.to_der().as_bytes().to_vec()
            }
        };
        siren_proto::message::encode_value(&Response {
            chain: self.chain.iter().map(|c| Bstr(c)).collect(),
            sig: Bstr(&sig),
        })
    }
}

/// `{ "chain": [bstr], "sig": bstr }`.
#[derive(Serialize)]
struct Response<'a> {
    chain: Vec<Bstr<'a>>,
    sig: Bstr<'a>,
}

/// A CBOR byte string (serde would write a `Vec<u8>` as an array of integers).
struct Bstr<'a>(&'a [u8]);

impl Serialize for Bstr<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

#[cfg(test)]
mod tests {
    use siren_api::auth::{AuthContext, AuthMechanism, AuthStep};
    use siren_api::{ServerName, Username};
    use siren_auth_certificate::testing::{CertSpec, KeyKind, TestCa};
    use siren_auth_certificate::{CertConfig, CertMechanism, IdentityMode};

    use super::*;
    use siren_client_session::CertificateLogin as _;

    /// What this module sends is what the server's mechanism accepts, for both key types and
    /// through an intermediate.
    #[tokio::test]
    async fn the_server_mechanism_accepts_this_clients_proof() {
        let root = TestCa::new("Root").unwrap();
        let issuing = root.intermediate("Issuing").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), &root.pem).unwrap();
        let server = ServerName::parse("alpha.test").unwrap();
        let config = CertConfig {
            ca_file: "ca.pem".into(),
            identity: IdentityMode::SanEmail,
        };
        let mech = CertMechanism::new(&config, dir.path(), server.clone()).unwrap();
        let uid = Uid::parse("alice@alpha.test").unwrap();
        for kind in [KeyKind::EcdsaP256, KeyKind::Ed25519] {
            let cert = issuing
                .issue(&CertSpec::email("alice@alpha.test", kind))
                .unwrap();
            let client =
                ClientCert::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
            assert_eq!(client.chain.len(), 2);
            let data = client.response(&[3; 32], &[4; 32], &uid);
            let ctx = |cb| AuthContext {
                server: server.clone(),
                peer: None,
                channel_binding: cb,
                device_key: [4; 32],
            };
            assert_eq!(
                mech.begin(ctx([3; 32])).step(&data).await.unwrap(),
                AuthStep::Success(Username::parse("alice").unwrap()),
                "{kind:?}"
            );
            assert!(matches!(
                mech.begin(ctx([5; 32])).step(&data).await.unwrap(),
                AuthStep::Failure { .. }
            ));
        }
    }

    #[test]
    fn files_are_checked() {
        let root = TestCa::new("Root").unwrap();
        let spec = CertSpec::email("alice@alpha.test", KeyKind::EcdsaP256);
        let a = root.issue(&spec).unwrap();
        let b = root.issue(&spec).unwrap();
        let err = |cert: &str, key: &str| {
            format!(
                "{:#}",
                ClientCert::from_pem(cert.as_bytes(), key.as_bytes()).unwrap_err()
            )
        };
        assert!(err(&a.chain_pem, &b.key_pem).contains("does not belong"));
        assert!(err("", &a.key_pem).contains("no CERTIFICATE"));
        assert!(err(&a.chain_pem, &a.chain_pem).contains("no private key"));
        // The key in SEC1 form ("EC PRIVATE KEY") works too.
        let ec = p256::SecretKey::from_pkcs8_pem(&a.key_pem).unwrap();
        let sec1 = ec.to_sec1_pem(Default::default()).unwrap();
        ClientCert::from_pem(a.chain_pem.as_bytes(), sec1.as_bytes()).unwrap();
    }
}
