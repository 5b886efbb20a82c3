//! SCRAM-SHA-256 credentials (RFC 5802, RFC 7677), as Kafka stores them: from a password, a
//! random salt and an iteration count, `SaltedPassword = PBKDF2-HMAC-SHA-256`, `StoredKey =
//! SHA-256(HMAC(SaltedPassword, "Client Key"))`, `ServerKey = HMAC(SaltedPassword, "Server
//! Key")`. Only the salt, count and the two keys are kept; a password is checked by deriving
//! its StoredKey again and comparing in constant time.

use std::num::NonZeroU32;

use ring::{digest, hmac, pbkdf2};

/// Iterations for new credentials (Kafka's default for SCRAM-SHA-256 is 4096; more costs every
/// login that is not cached and every guess an attacker with the image makes).
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// The range accepted in a stored credential (Kafka: 4096 to 16384; the upper bound here caps
/// the CPU one login can cost the broker).
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 1_000_000;
/// Salt length for new credentials; shorter salts are refused.
pub const SALT_BYTES: usize = 16;
/// The length of StoredKey and ServerKey.
pub const KEY_BYTES: usize = 32;

/// The stored keys of a credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Keys {
    pub stored_key: [u8; KEY_BYTES],
    pub server_key: [u8; KEY_BYTES],
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// The keys for `password` with `salt` and `iterations` (clamped to at least 1).
pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Keys {
    let mut salted = [0u8; KEY_BYTES];
    let n = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, n, salt, password, &mut salted);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let server_key = hmac::sign(&key, b"Server Key");
    let mut keys = Keys { stored_key: [0; KEY_BYTES], server_key: [0; KEY_BYTES] };
    keys.stored_key.copy_from_slice(digest::digest(&digest::SHA256, client_key.as_ref()).as_ref());
    keys.server_key.copy_from_slice(server_key.as_ref());
    keys
}

/// Whether `password` matches a credential with `stored_key` (constant-time comparison).
pub fn verify(password: &[u8], salt: &[u8], iterations: u32, stored_key: &[u8]) -> bool {
    let keys = derive(password, salt, iterations);
    stored_key.len() == KEY_BYTES
        && keys.stored_key.iter().zip(stored_key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Checks a credential's shape before it is stored.
pub fn check_credential(
    salt: &[u8],
    iterations: u32,
    stored: &[u8],
    server: &[u8],
) -> Result<(), String> {
    if salt.len() < SALT_BYTES || salt.len() > 1024 {
        return Err(format!("the salt must be {SALT_BYTES} to 1024 bytes, not {}", salt.len()));
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "iterations must be {MIN_ITERATIONS} to {MAX_ITERATIONS}, not {iterations}"
        ));
    }
    if stored.len() != KEY_BYTES || server.len() != KEY_BYTES {
        return Err(format!("stored and server keys must be {KEY_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7677_test_vector() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, i=4096.
        let salt = [
            0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36,
            0xfa, 0x81,
        ];
        let keys = derive(b"pencil", &salt, 4096);
        // ServerSignature = HMAC(ServerKey, AuthMessage) is 6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=
        let auth_message = b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &keys.server_key), auth_message);
        let expected = [
            0xea, 0xba, 0xe2, 0x4d, 0x10, 0x62, 0xdb, 0x75, 0xa9, 0x45, 0x1f, 0xf0, 0xb6, 0xea,
            0x7e, 0x98, 0xc8, 0x54, 0x65, 0x49, 0xff, 0x74, 0x1e, 0x67, 0x2d, 0x32, 0x51, 0xb2,
            0x39, 0x7d, 0xe4, 0x6e,
        ];
        assert_eq!(sig.as_ref(), &expected);
    }

    #[test]
    fn a_password_verifies_only_against_its_own_keys() {
        let salt = [7u8; SALT_BYTES];
        let keys = derive(b"secret", &salt, MIN_ITERATIONS);
        assert!(verify(b"secret", &salt, MIN_ITERATIONS, &keys.stored_key));
        assert!(!verify(b"Secret", &salt, MIN_ITERATIONS, &keys.stored_key));
        assert!(!verify(b"secret", &[8u8; SALT_BYTES], MIN_ITERATIONS, &keys.stored_key));
        assert!(!verify(b"secret", &salt, MIN_ITERATIONS, &keys.stored_key[..31]));
        assert!(
            check_credential(&salt, MIN_ITERATIONS, &keys.stored_key, &keys.server_key).is_ok()
        );
        assert!(
            check_credential(&salt[..4], MIN_ITERATIONS, &keys.stored_key, &keys.server_key)
                .is_err()
        );
        assert!(check_credential(&salt, 10, &keys.stored_key, &keys.server_key).is_err());
    }
}
