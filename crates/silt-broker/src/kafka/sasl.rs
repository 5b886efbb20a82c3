//! SASL on the Kafka listener (with `auth`, always over TLS): `SaslHandshake` (v1) picks a
//! mechanism, `SaslAuthenticate` carries its messages. `PLAIN` checks a user and password
//! against the user's SCRAM credential in the cluster image, exactly as a gRPC password login
//! (same login cache and failure throttle); `SCRAM-SHA-256` runs the two-round exchange of
//! `silt_core::scram_server`, so the password never crosses the wire. A failure is answered with
//! `SASL_AUTHENTICATION_FAILED` and closes the connection, as Kafka does. A client certificate
//! (mutual TLS) authenticates the connection without SASL.

use kafka_protocol::error::ResponseError as K;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use silt_core::scram_server::{self, Exchange};
use silt_raft::ScramCredential;

use super::{Connection, Kafka};
use crate::auth::{Credentials, Principal};

pub(crate) const PLAIN: &str = "PLAIN";
pub(crate) const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Where a connection is in SASL.
#[derive(Debug, Default)]
pub(crate) enum Sasl {
    /// No mechanism chosen yet.
    #[default]
    Start,
    /// The handshake chose this mechanism.
    Chosen(&'static str),
    /// SCRAM: the server's first message was sent; the client's final one is due. `None`:
    /// no such user (the exchange goes on, to fail at the proof, so users cannot be probed).
    Scram(Box<Exchange>, Option<ScramCredential>),
    /// Authenticated (or failed: the connection is then closed).
    Done,
}

pub(crate) fn handshake(
    conn: &mut Connection,
    req: &SaslHandshakeRequest,
) -> SaslHandshakeResponse {
    let mechanisms =
        vec![StrBytes::from_static_str(PLAIN), StrBytes::from_static_str(SCRAM_SHA_256)];
    let answer = SaslHandshakeResponse::default().with_mechanisms(mechanisms);
    if !matches!(conn.sasl, Sasl::Start) {
        return answer.with_error_code(K::IllegalSaslState.code());
    }
    match req.mechanism.as_str() {
        PLAIN => conn.sasl = Sasl::Chosen(PLAIN),
        SCRAM_SHA_256 => conn.sasl = Sasl::Chosen(SCRAM_SHA_256),
        _ => return answer.with_error_code(K::UnsupportedSaslMechanism.code()),
    }
    answer
}

/// One `SaslAuthenticate` round; `Err` carries the failure answer (the connection then closes).
pub(crate) async fn authenticate(
    k: &Kafka,
    conn: &mut Connection,
    req: SaslAuthenticateRequest,
) -> Result<SaslAuthenticateResponse, SaslAuthenticateResponse> {
    let fail = |code: i16, why: String| {
        SaslAuthenticateResponse::default()
            .with_error_code(code)
            .with_error_message(Some(StrBytes::from_string(why)))
    };
    match std::mem::take(&mut conn.sasl) {
        Sasl::Chosen(PLAIN) => {
            let Some((user, password)) = plain(&req.auth_bytes) else {
                return Err(fail(
                    K::SaslAuthenticationFailed.code(),
                    "malformed PLAIN message".into(),
                ));
            };
            let creds = Credentials { user: user.clone(), password };
            match crate::auth::authenticate(&k.shared, Some(&conn.info), Some(creds)).await {
                Ok(p) => Ok(done(conn, p)),
                Err(status) => {
                    Err(fail(K::SaslAuthenticationFailed.code(), status.message().to_string()))
                }
            }
        }
        Sasl::Chosen(_) => {
            let first = match scram_server::parse_client_first(&req.auth_bytes) {
                Ok(f) => f,
                Err(e) => return Err(fail(K::SaslAuthenticationFailed.code(), e.to_string())),
            };
            let credential = k.shared.cluster.image().users.get(&first.user).cloned();
            let (salt, iterations) = match &credential {
                Some(c) => (c.salt.clone(), c.iterations),
                None => (decoy_salt(k, &first.user), silt_core::scram::DEFAULT_ITERATIONS),
            };
            let exchange = first.respond(&server_nonce(), &salt, iterations);
            let out = SaslAuthenticateResponse::default()
                .with_auth_bytes(bytes::Bytes::from(exchange.server_first().to_string()));
            conn.sasl = Sasl::Scram(Box::new(exchange), credential);
            Ok(out)
        }
        Sasl::Scram(exchange, credential) => {
            let auth = &k.shared.auth;
            let remote = conn.info.remote;
            auth.throttle(remote.map(|a| a.ip())).await;
            let verdict = credential
                .as_ref()
                .map(|c| exchange.client_final(&req.auth_bytes, &c.stored_key, &c.server_key));
            let ok = matches!(verdict, Some(Ok(_)));
            auth.record(remote, &exchange.user, ok);
            match verdict {
                Some(Ok(server_final)) => {
                    let p = Principal::user(&exchange.user);
                    Ok(done(conn, p).with_auth_bytes(bytes::Bytes::from(server_final)))
                }
                _ => Err(fail(
                    K::SaslAuthenticationFailed.code(),
                    format!(
                        "authentication failed for user {:?}: unknown user or wrong password",
                        exchange.user
                    ),
                )),
            }
        }
        Sasl::Start | Sasl::Done => Err(fail(
            K::IllegalSaslState.code(),
            "SaslAuthenticate without a SaslHandshake, or after authentication".into(),
        )),
    }
}

fn done(conn: &mut Connection, p: Principal) -> SaslAuthenticateResponse {
    tracing::debug!(principal = p.as_str(), "Kafka connection authenticated");
    conn.principal = Some(p);
    conn.sasl = Sasl::Done;
    SaslAuthenticateResponse::default()
}

/// `authzid NUL user NUL password` (RFC 4616); the authzid must be empty or the user.
fn plain(bytes: &[u8]) -> Option<(String, Vec<u8>)> {
    if bytes.len() > scram_server::MAX_MESSAGE_BYTES {
        return None;
    }
    let mut parts = bytes.splitn(3, |b| *b == 0);
    let (authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    let user = std::str::from_utf8(user).ok()?.to_string();
    if user.is_empty() || !(authzid.is_empty() || authzid == user.as_bytes()) {
        return None;
    }
    Some((user, password.to_vec()))
}

/// 18 random bytes, base64 (printable, no commas).
fn server_nonce() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 18];
    // SystemRandom fails only without an OS source of randomness; a fixed nonce would then be
    // replayable, so fall back to the clock mixed in rather than zeros.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let t =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes[..16].copy_from_slice(&t.as_nanos().to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A salt for a user that does not exist, the same for every attempt at that name on this
/// broker (so the answer does not say the user is unknown).
fn decoy_salt(k: &Kafka, user: &str) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&k.decoy_key);
    ctx.update(user.as_bytes());
    ctx.finish().as_ref()[..silt_core::scram::SALT_BYTES].to_vec()
}
