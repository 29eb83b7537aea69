//! The session handshake, sans-IO: client→server and server↔server.
//!
//! Three messages, in the shape of Noise `IK` with the spec's challenge/response folded in
//! (PROTOCOL.md §"Handshake" is the normative text; this is a summary):
//!
//! ```text
//! prologue: version, role, responder's server name, responder's SEK
//! -> hello:       e, es, s, ss, {payload1}          (s = initiator's DEK, or its SEK for links)
//! <- hello_reply: e, ee, se, {challenge, rotation?}
//! -> finish:      {challenge, resume?}
//! split: initiator→responder and responder→initiator transport keys
//! ```
//!
//! * The initiator knows the responder's SEK beforehand (DNS, pinned). The responder proves it
//!   holds the SEK by decrypting `hello` (es, ss) and the initiator proves it holds its static key
//!   by decrypting `hello_reply` (se) and answering the challenge in `finish`; both ephemerals
//!   enter every key after `hello`, so the transport keys have forward secrecy and neither side's
//!   long-term key alone lets anyone impersonate the other.
//! * Every DH result is checked to be non-zero (a low-order point from the peer is refused).
//! * Each message's ciphertext is encrypted under a key derived from the chaining key *and the
//!   transcript hash so far*, so a change to any earlier byte (version, server name, keys,
//!   ciphertexts) makes decryption fail. XSalsa20-Poly1305 has no associated data; deriving the
//!   key from the transcript does that job.
//! * The resume request travels in `finish`, after the initiator proved its static key: a session
//!   id can only be resumed by the DEK it is bound to ([`SessionBinding`]).
//!
//! Each state is its own type and each step consumes it, so a step cannot be repeated or taken
//! out of order.

use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use siren_api::{ErrorCode, ServerName};
use subtle::ConstantTimeEq;
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, Zeroizing};

use crate::crypto::{self, hkdf, hkdf_expand};
use crate::ids::SessionId;
use crate::keys::{DekPublic, DekSecret, Ephemeral, KEY_LEN, KeyError, SekPublic, SekSecret};
use crate::labels;
use crate::transcript::{Digest, Transcript};
use crate::transport::Transport;

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// Which kind of handshake: a device opening a session, or a server opening a federation link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Client to server: the initiator's static key is a DEK.
    #[serde(rename = "c2s")]
    ClientToServer,
    /// Server to server: the initiator's static key is its SEK.
    #[serde(rename = "s2s")]
    ServerToServer,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::ClientToServer => 1,
            Role::ServerToServer => 2,
        }
    }
}

/// Why a handshake failed. [`HandshakeError::code`] gives the number for the `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The bytes are not a handshake message of the expected kind.
    #[error("malformed handshake message: {0}")]
    Malformed(String),
    /// The hello asks for a version this side does not speak.
    #[error("protocol version {offered} is not supported (this side speaks {supported})")]
    UnsupportedVersion {
        /// What the initiator asked for (any unsigned integer the CBOR carried).
        offered: u64,
        /// What this side speaks.
        supported: u16,
    },
    /// A client hello on a link listener, or the reverse.
    #[error("handshake role {got:?} is not accepted here (expected {expected:?})")]
    WrongRole {
        /// The role this listener accepts.
        expected: Role,
        /// The role in the hello.
        got: Role,
    },
    /// The hello names a server this responder is not.
    #[error("this server is not {0:?}")]
    UnknownServer(String),
    /// The hello names a SEK (by key id) that this responder does not hold.
    #[error("the hello names a server key this server does not hold (stale pin or wrong server)")]
    UnknownKey,
    /// Decryption failed: wrong keys or an altered transcript.
    #[error("handshake decryption failed (wrong key or altered message)")]
    Decrypt,
    /// A key exchange gave the all-zero value.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The challenge response does not match the challenge.
    #[error("challenge response does not match")]
    ChallengeMismatch,
    /// The responder announced a new SEK but could not prove it holds it.
    #[error("the server announced a new key without proving it holds it")]
    BadRotationProof,
    /// [`Initiator::client_with`] was given the `ss` of another device.
    #[error("the precomputed static key agreement belongs to another device")]
    WrongStaticShared,
    /// A server→server hello did not name the initiating server.
    #[error("a server-to-server hello must name the initiating server")]
    MissingInitiatorName,
    /// The peer answered with an error frame.
    #[error("peer refused the handshake: {} ({code}): {message}", ErrorCode::from_u16(*code).map_or("unknown", |c| c.name()))]
    Refused {
        /// The peer's error code.
        code: u16,
        /// The peer's text.
        message: String,
    },
}

impl HandshakeError {
    /// The error code to send in the `error` frame before closing.
    pub fn code(&self) -> ErrorCode {
        match self {
            HandshakeError::Malformed(_) => ErrorCode::MalformedMessage,
            HandshakeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            _ => ErrorCode::HandshakeFailed,
        }
    }
}

/// What the initiator asks for in `finish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRequest {
    /// A new session.
    Open,
    /// Resume this session (granted only if it is bound to the same DEK).
    Resume(SessionId),
}

/// Who the responder is talking to, once `hello` is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A device, named by its DEK. Proven only once `finish` is read.
    Device(DekPublic),
    /// A server claiming `name`, with static key `sek`. The responder must check that `sek` is
    /// `name`'s published (or pinned) SEK before replying.
    Server {
        /// The name the initiator claims.
        name: ServerName,
        /// Its static key.
        sek: SekPublic,
    },
}

// ---------------------------------------------------------------------------------------------
// Wire messages (plaintext CBOR frames before the transport keys exist).

/// The handshake frames, tagged by `t`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t")]
enum Wire {
    #[serde(rename = "hello")]
    Hello {
        v: u64,
        role: Role,
        srv: ServerName,
        #[serde(with = "crate::strict::fixed")]
        kid: [u8; 8],
        #[serde(with = "crate::strict::fixed")]
        e: [u8; KEY_LEN],
        #[serde(with = "crate::strict::fixed")]
        s: [u8; KEY_LEN + crypto::TAG_LEN],
        #[serde(with = "crate::strict::bytes")]
        p: Vec<u8>,
    },
    #[serde(rename = "hello_reply")]
    HelloReply {
        #[serde(with = "crate::strict::fixed")]
        e: [u8; KEY_LEN],
        #[serde(with = "crate::strict::bytes")]
        p: Vec<u8>,
    },
    #[serde(rename = "finish")]
    Finish {
        #[serde(with = "crate::strict::bytes")]
        p: Vec<u8>,
    },
    #[serde(rename = "error")]
    Error {
        code: u16,
        #[serde(with = "crate::strict::text")]
        msg: String,
    },
}

/// Largest handshake frame we accept: a hello is about 200 bytes.
pub const MAX_HANDSHAKE_FRAME: usize = 4096;

fn decode_wire(bytes: &[u8], expected: &'static str) -> Result<Wire, HandshakeError> {
    if bytes.len() > MAX_HANDSHAKE_FRAME {
        return Err(HandshakeError::Malformed(format!(
            "{expected} of {} bytes is larger than {MAX_HANDSHAKE_FRAME}",
            bytes.len()
        )));
    }
    let wire: Wire = crate::message::decode_cbor(bytes)
        .map_err(|e| HandshakeError::Malformed(format!("{expected}: {e}")))?;
    match wire {
        Wire::Error { code, msg } => Err(HandshakeError::Refused { code, message: msg }),
        other => Ok(other),
    }
}

/// Encodes the plaintext `error` frame a responder sends before closing a failed handshake.
pub fn error_frame(code: ErrorCode, message: &str) -> Vec<u8> {
    crate::message::encode_cbor(&Wire::Error {
        code: code.as_u16(),
        msg: message.to_owned(),
    })
}

/// Reads a plaintext `error` frame (as sent by a responder that refuses a handshake): its code
/// and text, or `None` if the bytes are not one.
pub fn decode_error_frame(frame: &[u8]) -> Option<(u16, String)> {
    match crate::message::decode_cbor::<Wire>(frame) {
        Ok(Wire::Error { code, msg }) => Some((code, msg)),
        _ => None,
    }
}

/// Encrypted payload of `hello` (KCI-exposed: carries nothing secret).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Payload1 {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<ServerName>,
}

/// Encrypted payload of `hello_reply`.
#[derive(Debug, Serialize, Deserialize)]
struct Payload2 {
    #[serde(with = "crate::strict::fixed")]
    ch: [u8; 32],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rot: Option<Rotation>,
}

/// A SEK rotation announcement inside `hello_reply`.
#[derive(Debug, Serialize, Deserialize)]
struct Rotation {
    sek: SekPublic,
    #[serde(with = "crate::strict::fixed")]
    proof: [u8; 32],
}

/// Encrypted payload of `finish`.
#[derive(Debug, Serialize, Deserialize)]
struct Payload3 {
    #[serde(with = "crate::strict::fixed")]
    ch: [u8; 32],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume: Option<SessionId>,
}

// ---------------------------------------------------------------------------------------------
// Symmetric state.

/// Chaining key, transcript hash and current key, as in Noise's SymmetricState.
struct Symmetric {
    ck: Zeroizing<[u8; 32]>,
    h: [u8; 32],
    k: Option<Zeroizing<[u8; 32]>>,
}

impl Symmetric {
    fn new(version: u16, role: Role, server: &ServerName, sek: &SekPublic) -> Self {
        let h: [u8; 32] = Sha256::digest(labels::HANDSHAKE_PROTOCOL.as_bytes()).into();
        let mut s = Symmetric {
            ck: Zeroizing::new(h),
            h,
            k: None,
        };
        let mut prologue = Transcript::new(labels::HANDSHAKE_PROLOGUE);
        prologue
            .u64(u64::from(version))
            .fixed(&[role.byte()])
            .text(server.as_str())
            .fixed(sek.as_bytes());
        s.mix_hash(prologue.as_bytes());
        s
    }

    fn mix_hash(&mut self, data: &[u8]) {
        let mut hasher = Sha256::new();
        hasher.update(self.h);
        hasher.update(data);
        self.h = hasher.finalize().into();
    }

    fn mix_key(&mut self, dh: Zeroizing<[u8; 32]>) {
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf(Some(&self.ck[..]), dh.as_ref(), &[], okm.as_mut());
        let mut ck = [0u8; 32];
        let mut k = [0u8; 32];
        ck.copy_from_slice(&okm[..32]);
        k.copy_from_slice(&okm[32..]);
        self.ck = Zeroizing::new(ck);
        self.k = Some(Zeroizing::new(k));
        ck.zeroize();
        k.zeroize();
    }

    /// The one-time key for the next handshake ciphertext: HKDF-Expand(k, label || h).
    fn message_key(&self) -> Zeroizing<[u8; 32]> {
        let mut key = Zeroizing::new([0u8; 32]);
        // `k` is set by the first mix_key, which every pattern runs before encrypting.
        let k = self.k.as_deref().unwrap_or(&[0u8; 32]);
        hkdf_expand(
            k,
            &[labels::HANDSHAKE_MESSAGE_KEY.as_bytes(), &self.h],
            key.as_mut(),
        );
        key
    }

    fn encrypt_and_hash(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let ct = crypto::seal(&self.message_key(), &[0u8; crypto::NONCE_LEN], plaintext);
        self.mix_hash(&ct);
        ct
    }

    fn decrypt_and_hash(
        &mut self,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HandshakeError> {
        let pt = crypto::open(&self.message_key(), &[0u8; crypto::NONCE_LEN], ciphertext)
            .map_err(|_| HandshakeError::Decrypt)?;
        self.mix_hash(ciphertext);
        Ok(Zeroizing::new(pt))
    }

    /// Transport keys (initiator→responder, responder→initiator) and the handshake hash.
    fn split(&self) -> (Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>, Digest) {
        let mut okm = Zeroizing::new([0u8; 64]);
        hkdf(
            Some(&self.ck[..]),
            &[],
            &[labels::HANDSHAKE_SPLIT.as_bytes(), &self.h],
            okm.as_mut(),
        );
        let mut i2r = Zeroizing::new([0u8; 32]);
        let mut r2i = Zeroizing::new([0u8; 32]);
        i2r.copy_from_slice(&okm[..32]);
        r2i.copy_from_slice(&okm[32..]);
        (i2r, r2i, Digest::from_bytes(self.h))
    }
}

fn rotation_proof(h_before: &[u8; 32], dh: &[u8; 32], new_sek: &SekPublic) -> [u8; 32] {
    let mut proof = [0u8; 32];
    hkdf(
        Some(h_before),
        dh,
        &[labels::SEK_ROTATION.as_bytes(), new_sek.as_bytes()],
        &mut proof,
    );
    proof
}

fn decode_payload<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    what: &str,
) -> Result<T, HandshakeError> {
    crate::message::decode_cbor(bytes)
        .map_err(|e| HandshakeError::Malformed(format!("{what}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Initiator.

/// The `ss` term of a device's handshakes with one server: X25519 of the device's DEK and the
/// server's SEK. It depends on the two static keys only, so a client computes it once per DEK
/// and server key and passes it to [`Initiator::client_with`] on every later connection. It is
/// as secret as the DEK (zeroized on drop) and never leaves the client. (A server does not keep
/// one: whether it had one for a DEK would show in how fast it answers a `hello`, telling
/// anyone who can open a connection that a device connected lately.)
pub struct StaticShared {
    dek: DekPublic,
    sek: SekPublic,
    ss: Zeroizing<[u8; KEY_LEN]>,
}

impl StaticShared {
    /// Computes `ss` for `device` and the server key `server_sek` (refusing an all-zero result,
    /// as the handshake does).
    pub fn new(device: &DekSecret, server_sek: &SekPublic) -> Result<Self, HandshakeError> {
        Ok(StaticShared {
            dek: device.public(),
            sek: *server_sek,
            ss: device.agree(server_sek.as_bytes())?,
        })
    }

    /// Whether this was computed for `device` and `server_sek` (a client keeps one and computes
    /// a new one after a new login or a server key rotation).
    pub fn is_for(&self, device: &DekPublic, server_sek: &SekPublic) -> bool {
        self.dek == *device && self.sek == *server_sek
    }

    /// The one a client keeps in `kept`, for `device` and `server_sek`: the kept one if it is
    /// for them, otherwise a new one, kept from now on.
    pub fn keep<'a>(
        kept: &'a mut Option<StaticShared>,
        device: &DekSecret,
        server_sek: &SekPublic,
    ) -> Result<&'a StaticShared, HandshakeError> {
        let shared = match kept.take() {
            Some(shared) if shared.is_for(&device.public(), server_sek) => shared,
            _ => StaticShared::new(device, server_sek)?,
        };
        Ok(kept.insert(shared))
    }
}

impl std::fmt::Debug for StaticShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticShared")
            .field("dek", &self.dek)
            .field("sek", &self.sek)
            .finish_non_exhaustive()
    }
}

/// The initiator after sending `hello`, waiting for `hello_reply`.
pub struct Initiator {
    sym: Symmetric,
    e: Ephemeral,
    s: StaticSecret,
    request: SessionRequest,
}

/// A finished handshake, initiator side.
#[derive(Debug)]
pub struct InitiatorDone {
    /// The transport keys.
    pub transport: Transport,
    /// The responder's new SEK, if it announced a rotation (proven by the old and the new key).
    /// The caller updates its pin.
    pub rotated_sek: Option<SekPublic>,
    /// The final transcript hash (for channel binding).
    pub handshake_hash: Digest,
}

impl Initiator {
    /// A device opens (or resumes) a session with `server`, whose SEK it knows from DNS or a pin.
    /// Returns the state and the `hello` frame to send.
    pub fn client(
        server: &ServerName,
        server_sek: &SekPublic,
        device: &DekSecret,
        request: SessionRequest,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        Self::client_with(
            server,
            &StaticShared::new(device, server_sek)?,
            device,
            request,
            rng,
        )
    }

    /// [`Initiator::client`] with the `ss` term computed earlier ([`StaticShared`]): a device
    /// reconnecting to its server (a resumption, a reconnect after a network change) saves one
    /// of its four X25519 agreements with another key (its ephemeral key's generation, a fifth
    /// and cheaper multiplication, remains). The messages are the same. `shared` must have
    /// been computed from `device` (else [`HandshakeError::WrongStaticShared`]); the server's
    /// SEK is the one it was computed with.
    pub fn client_with(
        server: &ServerName,
        shared: &StaticShared,
        device: &DekSecret,
        request: SessionRequest,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        if !bool::from(shared.dek.as_bytes().ct_eq(device.public().as_bytes())) {
            return Err(HandshakeError::WrongStaticShared);
        }
        let s = StaticSecret::from(*device.to_bytes());
        Self::start(
            Role::ClientToServer,
            server,
            &shared.sek,
            s,
            device.public().as_bytes(),
            Some(&shared.ss),
            Payload1::default(),
            request,
            rng,
        )
    }

    /// Server `from` opens a federation link to server `to`.
    pub fn server(
        from: &ServerName,
        own: &SekSecret,
        to: &ServerName,
        to_sek: &SekPublic,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        let s = StaticSecret::from(*own.to_bytes());
        Self::start(
            Role::ServerToServer,
            to,
            to_sek,
            s,
            own.public().as_bytes(),
            None,
            Payload1 {
                from: Some(from.clone()),
            },
            SessionRequest::Open,
            rng,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        role: Role,
        server: &ServerName,
        server_sek: &SekPublic,
        s: StaticSecret,
        s_pub: &[u8; KEY_LEN],
        ss: Option<&[u8; KEY_LEN]>,
        payload: Payload1,
        request: SessionRequest,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(Initiator, Vec<u8>), HandshakeError> {
        let mut sym = Symmetric::new(PROTOCOL_VERSION, role, server, server_sek);
        let e = Ephemeral::generate(rng);
        sym.mix_hash(e.public());
        sym.mix_key(e.agree(server_sek.as_bytes())?);
        let c_s = sym.encrypt_and_hash(s_pub);
        let ss = match ss {
            Some(known) => Zeroizing::new(*known),
            None => crate::keys::dh_static(&s, server_sek.as_bytes())?,
        };
        sym.mix_key(ss);
        let c_p = sym.encrypt_and_hash(&crate::message::encode_cbor(&payload));
        let s_field: [u8; KEY_LEN + crypto::TAG_LEN] = c_s
            .try_into()
            .unwrap_or_else(|_| unreachable!("secretbox of 32 bytes is 48 bytes"));
        let hello = Wire::Hello {
            v: u64::from(PROTOCOL_VERSION),
            role,
            srv: server.clone(),
            kid: server_sek.key_id(),
            e: *e.public(),
            s: s_field,
            p: c_p,
        };
        Ok((
            Initiator { sym, e, s, request },
            crate::message::encode_cbor(&hello),
        ))
    }

    /// Reads `hello_reply`; returns the finished handshake and the `finish` frame to send.
    pub fn read_reply(mut self, reply: &[u8]) -> Result<(InitiatorDone, Vec<u8>), HandshakeError> {
        let Wire::HelloReply { e: re, p } = decode_wire(reply, "hello_reply")? else {
            return Err(HandshakeError::Malformed("expected hello_reply".into()));
        };
        self.sym.mix_hash(&re);
        self.sym.mix_key(self.e.agree(&re)?);
        self.sym.mix_key(crate::keys::dh_static(&self.s, &re)?);
        let h_before = self.sym.h;
        let payload: Payload2 =
            decode_payload(&self.sym.decrypt_and_hash(&p)?, "hello_reply payload")?;
        let rotated_sek = match payload.rot {
            None => None,
            Some(rot) => {
                let dh = self.e.agree(rot.sek.as_bytes())?;
                let expected = rotation_proof(&h_before, &dh, &rot.sek);
                if !bool::from(expected.ct_eq(&rot.proof)) {
                    return Err(HandshakeError::BadRotationProof);
                }
                Some(rot.sek)
            }
        };
        let p3 = Payload3 {
            ch: payload.ch,
            resume: match self.request {
                SessionRequest::Open => None,
                SessionRequest::Resume(id) => Some(id),
            },
        };
        let c = self.sym.encrypt_and_hash(&crate::message::encode_cbor(&p3));
        let finish = crate::message::encode_cbor(&Wire::Finish { p: c });
        let (i2r, r2i, handshake_hash) = self.sym.split();
        Ok((
            InitiatorDone {
                transport: Transport::new(&i2r, &r2i, true),
                rotated_sek,
                handshake_hash,
            },
            finish,
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Responder.

/// The responder's identity: its name, its current SEK and the SEKs it retired but still answers
/// to during a rotation.
pub struct ResponderKeys {
    /// The server name clients and peers address.
    pub name: ServerName,
    /// The current SEK (published in DNS).
    pub current: SekSecret,
    /// Earlier SEKs, still accepted so that pinned peers learn the new key.
    pub retired: Vec<SekSecret>,
}

/// The responder after reading `hello`: the peer's claimed identity is known but not yet proven.
/// Check it (federation policy, the claimed server's SEK) before calling [`HelloReceived::reply`].
pub struct HelloReceived {
    sym: Symmetric,
    re: [u8; KEY_LEN],
    rs: [u8; KEY_LEN],
    peer: Peer,
    /// The current SEK, when the hello named a retired one.
    rotate_to: Option<(SekPublic, StaticSecret)>,
}

/// The responder after sending `hello_reply`, waiting for `finish`.
pub struct AwaitingFinish {
    sym: Symmetric,
    challenge: [u8; 32],
    peer: Peer,
}

/// A finished handshake, responder side.
#[derive(Debug)]
pub struct ResponderDone {
    /// The transport keys.
    pub transport: Transport,
    /// The peer, now proven to hold its static key.
    pub peer: Peer,
    /// What the peer asked for.
    pub request: SessionRequest,
    /// The final transcript hash (for channel binding).
    pub handshake_hash: Digest,
}

/// Reads a `hello`. `accept` is the role this listener serves.
pub fn read_hello(
    keys: &ResponderKeys,
    accept: Role,
    hello: &[u8],
) -> Result<HelloReceived, HandshakeError> {
    let Wire::Hello {
        v,
        role,
        srv,
        kid,
        e: ie,
        s,
        p,
    } = decode_wire(hello, "hello")?
    else {
        return Err(HandshakeError::Malformed("expected hello".into()));
    };
    if v != u64::from(PROTOCOL_VERSION) {
        return Err(HandshakeError::UnsupportedVersion {
            offered: v,
            supported: PROTOCOL_VERSION,
        });
    }
    if role != accept {
        return Err(HandshakeError::WrongRole {
            expected: accept,
            got: role,
        });
    }
    if srv != keys.name {
        return Err(HandshakeError::UnknownServer(srv.to_string()));
    }
    let (sek, rotate_to) = if kid == keys.current.public().key_id() {
        (&keys.current, None)
    } else {
        let retired = keys
            .retired
            .iter()
            .find(|k| k.public().key_id() == kid)
            .ok_or(HandshakeError::UnknownKey)?;
        let current = StaticSecret::from(*keys.current.to_bytes());
        (retired, Some((keys.current.public(), current)))
    };
    let mut sym = Symmetric::new(PROTOCOL_VERSION, role, &keys.name, &sek.public());
    sym.mix_hash(&ie);
    sym.mix_key(sek.agree(&ie)?);
    let rs_plain = sym.decrypt_and_hash(&s)?;
    let rs: [u8; KEY_LEN] = rs_plain
        .as_slice()
        .try_into()
        .map_err(|_| HandshakeError::Malformed("static key must be 32 bytes".into()))?;
    sym.mix_key(sek.agree(&rs)?);
    let payload: Payload1 = decode_payload(&sym.decrypt_and_hash(&p)?, "hello payload")?;
    let peer = match role {
        Role::ClientToServer => Peer::Device(DekPublic::from_bytes(rs)),
        Role::ServerToServer => Peer::Server {
            name: payload.from.ok_or(HandshakeError::MissingInitiatorName)?,
            sek: SekPublic::from_bytes(rs),
        },
    };
    Ok(HelloReceived {
        sym,
        re: ie,
        rs,
        peer,
        rotate_to,
    })
}

impl HelloReceived {
    /// Who the initiator claims to be.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Sends `hello_reply` with a fresh ephemeral key and challenge.
    pub fn reply(
        mut self,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(AwaitingFinish, Vec<u8>), HandshakeError> {
        let e = Ephemeral::generate(rng);
        self.sym.mix_hash(e.public());
        self.sym.mix_key(e.agree(&self.re)?);
        self.sym.mix_key(e.agree(&self.rs)?);
        let h_before = self.sym.h;
        let mut challenge = [0u8; 32];
        rng.fill_bytes(&mut challenge);
        let rot = match &self.rotate_to {
            None => None,
            Some((new_pub, new_secret)) => {
                let dh = crate::keys::dh_static(new_secret, &self.re)?;
                Some(Rotation {
                    sek: *new_pub,
                    proof: rotation_proof(&h_before, &dh, new_pub),
                })
            }
        };
        let payload = Payload2 { ch: challenge, rot };
        let c = self
            .sym
            .encrypt_and_hash(&crate::message::encode_cbor(&payload));
        let reply = crate::message::encode_cbor(&Wire::HelloReply {
            e: *e.public(),
            p: c,
        });
        Ok((
            AwaitingFinish {
                sym: self.sym,
                challenge,
                peer: self.peer,
            },
            reply,
        ))
    }
}

impl AwaitingFinish {
    /// Reads `finish`: the initiator proves its static key by answering the challenge.
    pub fn read_finish(mut self, finish: &[u8]) -> Result<ResponderDone, HandshakeError> {
        let Wire::Finish { p } = decode_wire(finish, "finish")? else {
            return Err(HandshakeError::Malformed("expected finish".into()));
        };
        let payload: Payload3 = decode_payload(&self.sym.decrypt_and_hash(&p)?, "finish payload")?;
        if !bool::from(payload.ch.ct_eq(&self.challenge)) {
            return Err(HandshakeError::ChallengeMismatch);
        }
        let (i2r, r2i, handshake_hash) = self.sym.split();
        Ok(ResponderDone {
            transport: Transport::new(&i2r, &r2i, false),
            peer: self.peer,
            request: match payload.resume {
                None => SessionRequest::Open,
                Some(id) => SessionRequest::Resume(id),
            },
            handshake_hash,
        })
    }
}

/// A session id and the DEK it is bound to, as the server stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionBinding {
    /// The id the server gave out.
    pub id: SessionId,
    /// The DEK that opened the session.
    pub dek: DekPublic,
}

impl SessionBinding {
    /// Whether a handshake that proved `proven` may resume this session. A stolen session id is
    /// worthless: the thief would also need the DEK's secret to finish the handshake.
    pub fn may_resume(&self, proven: &DekPublic) -> bool {
        bool::from(self.dek.as_bytes().ct_eq(proven.as_bytes()))
    }
}

#[cfg(test)]
mod tests;
