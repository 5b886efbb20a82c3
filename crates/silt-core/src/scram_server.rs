//! The server's side of a SCRAM-SHA-256 exchange (RFC 5802, RFC 7677), as SASL mechanism
//! `SCRAM-SHA-256` runs it over Kafka's `SaslAuthenticate`: the client's first message names
//! the user and a nonce; the server answers with the full nonce, the credential's salt and
//! iteration count; the client's final message proves it knows the password (the proof is
//! checked against the stored key only: the password never crosses the wire), and the server's
//! final message proves the server holds the credential too. Pure: no I/O, no randomness (the
//! caller supplies the server nonce).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::{digest, hmac};

use crate::scram::KEY_BYTES;

/// Longest message accepted (user names are at most a few hundred bytes; nonces tens).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Why an exchange failed (the client is told only that authentication failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("the authorization id must be empty or the user")]
    AuthorizationId,
    #[error("unsupported SCRAM extension")]
    Extension,
    #[error("the proof does not match: wrong password or unknown user")]
    BadProof,
}

/// The client's first message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFirst {
    /// The user, unescaped (`=2C` is `,`, `=3D` is `=`).
    pub user: String,
    gs2_header: String,
    client_nonce: String,
    bare: String,
}

/// An exchange waiting for the client's final message.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub user: String,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

fn text(msg: &[u8]) -> Result<&str, ScramError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError::Malformed("message too long"));
    }
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8"))
}

fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses `gs2-header client-first-bare`.
pub fn parse_client_first(msg: &[u8]) -> Result<ClientFirst, ScramError> {
    let msg = text(msg)?;
    let mut parts = msg.splitn(3, ',');
    let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ScramError::Malformed("no GS2 header"));
    };
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
        _ => return Err(ScramError::Malformed("bad channel binding flag")),
    }
    let mut attrs = bare.split(',');
    let user = attrs
        .next()
        .and_then(|a| a.strip_prefix("n="))
        .ok_or(ScramError::Malformed("no user name"))?;
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
        .ok_or(ScramError::Malformed("no client nonce"))?;
    // Extensions (Kafka's `tokenauth` for delegation tokens among them) are not supported.
    if attrs.next().is_some() || user.starts_with("m=") {
        return Err(ScramError::Extension);
    }
    let user = unescape(user)?;
    if user.is_empty() {
        return Err(ScramError::Malformed("empty user name"));
    }
    match authzid {
        "" => {}
        a => {
            let id = a.strip_prefix("a=").ok_or(ScramError::Malformed("bad authzid"))?;
            if unescape(id)? != user {
                return Err(ScramError::AuthorizationId);
            }
        }
    }
    Ok(ClientFirst {
        user,
        gs2_header: format!("{cbind},{authzid},"),
        client_nonce: client_nonce.to_string(),
        bare: bare.to_string(),
    })
}

impl ClientFirst {
    /// The server's first message for a credential with `salt` and `iterations`;
    /// `server_nonce` must be fresh random printable characters without commas.
    pub fn respond(self, server_nonce: &str, salt: &[u8], iterations: u32) -> Exchange {
        let nonce = format!("{}{server_nonce}", self.client_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(salt));
        Exchange {
            user: self.user,
            gs2_header: self.gs2_header,
            nonce,
            client_first_bare: self.bare,
            server_first,
        }
    }
}

impl Exchange {
    /// The server's first message.
    pub fn server_first(&self) -> &str {
        &self.server_first
    }

    /// Checks the client's final message against the stored credential; returns the server's
    /// final message (`v=` the server signature) when the proof holds.
    pub fn client_final(
        &self,
        msg: &[u8],
        stored_key: &[u8],
        server_key: &[u8],
    ) -> Result<String, ScramError> {
        let msg = text(msg)?;
        let (without_proof, proof) =
            msg.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed("no channel binding"))?;
        if binding != B64.encode(&self.gs2_header) {
            return Err(ScramError::Malformed("the channel binding is not the GS2 header"));
        }
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed("no nonce"))?;
        if nonce != self.nonce {
            return Err(ScramError::Malformed("the nonce is not the exchange's"));
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("proof not base64"))?;
        if proof.len() != KEY_BYTES || stored_key.len() != KEY_BYTES {
            return Err(ScramError::BadProof);
        }
        let auth_message =
            format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let signature =
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored_key), auth_message.as_bytes());
        let client_key: Vec<u8> =
            proof.iter().zip(signature.as_ref()).map(|(p, s)| p ^ s).collect();
        let derived = digest::digest(&digest::SHA256, &client_key);
        let diff = derived.as_ref().iter().zip(stored_key).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(ScramError::BadProof);
        }
        let server_signature =
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, server_key), auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::derive;

    /// RFC 7677's example exchange (user "user", password "pencil", 4096 iterations).
    #[test]
    fn the_rfc_7677_exchange_verifies_and_signs() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = derive(b"pencil", &salt, 4096);
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.user, "user");
        let x = first.respond("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", &salt, 4096);
        assert_eq!(
            x.server_first(),
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let server_final = x.client_final(client_final, &keys.stored_key, &keys.server_key);
        assert_eq!(server_final.unwrap(), "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
        let wrong = derive(b"pencils", &salt, 4096);
        assert_eq!(
            x.client_final(client_final, &wrong.stored_key, &wrong.server_key),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn malformed_and_unsupported_first_messages_are_refused() {
        assert_eq!(parse_client_first(b"p=tls-unique,,n=u,r=x"), Err(ScramError::ChannelBinding));
        assert_eq!(parse_client_first(b"n,a=other,n=u,r=x"), Err(ScramError::AuthorizationId));
        assert_eq!(parse_client_first(b"n,,n=u,r=x,tokenauth=true"), Err(ScramError::Extension));
        assert!(parse_client_first(b"n,,n=u").is_err());
        assert!(parse_client_first(b"garbage").is_err());
        assert!(parse_client_first(&[0xff; 10]).is_err());
        assert_eq!(parse_client_first(b"n,a=a=3Db,n=a=3Db,r=x").unwrap().user, "a=b");
    }
}
