//! TLS on the client listener (rustls with ring): the certificate chain and key from PEM files,
//! and, with a client CA, required client certificates (mTLS). The files are read again on
//! [`ServerTls::reload`] (siltd calls it on SIGHUP): new connections get the new configuration,
//! open ones keep theirs, and a reload that fails keeps the old one.
//!
//! Handshakes run off the accept loop, at most [`MAX_HANDSHAKES`] at once and each within
//! [`HANDSHAKE_TIMEOUT`], so a slow or hostile peer holds neither the loop nor memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use crate::auth::connection::TlsConn;

/// Handshakes in progress at once; more connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 256;
/// A handshake not finished in this time is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the listener's certificate, key and (for mTLS) client CA are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// With a client CA: a client may also connect without a certificate (then it must log in
    /// with a password: authentication on). A certificate it presents must still verify.
    pub client_certificate_optional: bool,
    /// Which name of a client certificate is its principal.
    pub principal: PrincipalSource,
}

/// Where a client certificate's principal name comes from (`tls_principal`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalSource {
    /// The subject common name.
    #[default]
    Cn,
    /// The first subject alternative name that is an e-mail address, DNS name or URI.
    San,
}

impl std::str::FromStr for PrincipalSource {
    type Err = String;

    fn from_str(s: &str) -> Result<PrincipalSource, String> {
        match s {
            "cn" => Ok(PrincipalSource::Cn),
            "san" => Ok(PrincipalSource::San),
            _ => Err(format!("{s:?} is not cn or san")),
        }
    }
}

impl PrincipalSource {
    /// The principal name of a DER certificate, if it has the name this source reads.
    pub fn name_of(self, der: &[u8]) -> Option<String> {
        match self {
            PrincipalSource::Cn => subject_common_name(der),
            PrincipalSource::San => subject_alt_names(der).into_iter().next(),
        }
    }
}

/// The listener's TLS configuration, replaceable while it serves.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn load(files: TlsFiles) -> Result<ServerTls, String> {
        let config = server_config(&files)?;
        Ok(ServerTls { files, current: RwLock::new(Arc::new(config)) })
    }

    /// Reads the files again; on an error the current configuration stays.
    pub fn reload(&self) -> Result<(), String> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// Whether clients must present a certificate signed by the client CA.
    pub fn requires_client_certificates(&self) -> bool {
        self.files.client_ca.is_some() && !self.files.client_certificate_optional
    }

    /// Which name of a client certificate is its principal.
    pub fn principal_source(&self) -> PrincipalSource {
        self.files.principal
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// TLS for this broker's own calls to its peers' internal services: it trusts the cluster CA
/// and presents its broker certificate.
pub fn internal_client_config(
    cert: &Path,
    key: &Path,
    cluster_ca: &Path,
) -> Result<tonic::transport::ClientTlsConfig, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (ca_pem, cert_pem, key_pem) = (read(cluster_ca)?, read(cert)?, read(key)?);
    // Checked here so a bad file fails at start, not at the first connection.
    for (pem, path) in [(&ca_pem, cluster_ca), (&cert_pem, cert)] {
        let certs = CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>();
        if certs.map_or(true, |c| c.is_empty()) {
            return Err(format!("{}: no PEM certificate in it", path.display()));
        }
    }
    PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: no usable private key: {e}", key.display()))?;
    Ok(tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem)))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, String> {
    let certs = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: no usable private key: {e}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certificates(ca)? {
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if files.client_certificate_optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("{} and {}: {e}", files.cert.display(), files.key.display()))?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Decides whether a peer that completed the handshake may send requests, from its verified
/// end-entity certificate (DER).
pub type PeerCheck = Arc<dyn Fn(&[u8]) -> Result<(), String> + Send + Sync>;

/// The connections of `listener` that completed a TLS handshake (and passed `check`, if any),
/// for the gRPC server; ends when the server drops it.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    check: Option<PeerCheck>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        // One connection per round; ends when the server stops listening.
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else { return };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = tx.closed() => return,
            };
            let (sock, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            let (acceptor, tx, check) = (tls.acceptor(), tx.clone(), check.clone());
            let principal = tls.principal_source();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                    Ok(Ok(stream)) => {
                        if let Some(check) = check {
                            let leaf =
                                stream.get_ref().1.peer_certificates().and_then(|c| c.first());
                            let verdict = match leaf {
                                Some(cert) => check(cert.as_ref()),
                                None => Err("no client certificate".to_string()),
                            };
                            if let Err(why) = verdict {
                                tracing::warn!(%peer, why, "peer refused before any request");
                                return;
                            }
                        }
                        let _ = tx.send(Ok(TlsConn::new(stream, principal))).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The subject of a DER certificate and the TBS fields after it.
fn subject_and_rest(der: &[u8]) -> Option<(&[u8], &[u8])> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serial,
    // signature, issuer, validity, subject, subjectPublicKeyInfo, [1] [2] OPTIONAL,
    // [3] extensions OPTIONAL }, ... }
    let (cert, _) = der_element(der, 0x30)?;
    let (mut tbs, _) = der_element(cert, 0x30)?;
    if tbs.first() == Some(&0xa0) {
        tbs = der_element(tbs, 0xa0)?.1;
    }
    let rest = der_element(tbs, 0x02)?.1; // serial number
    let rest = der_element(rest, 0x30)?.1; // signature algorithm
    let rest = der_element(rest, 0x30)?.1; // issuer
    let rest = der_element(rest, 0x30)?.1; // validity
    der_element(rest, 0x30)
}

/// The e-mail (rfc822Name), DNS and URI subject alternative names of a DER certificate, in
/// order (bounds-checked: empty for anything malformed).
pub fn subject_alt_names(der: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let Some((_, rest)) = subject_and_rest(der) else { return names };
    let Some((_, mut rest)) = der_element(rest, 0x30) else { return names }; // public key
    // Skip issuerUniqueID [1] and subjectUniqueID [2]; then [3] { SEQUENCE OF Extension }.
    while let Some((tag, content, next)) = any_element(rest) {
        rest = next;
        if tag != 0xa3 {
            continue;
        }
        let Some((mut exts, _)) = der_element(content, 0x30) else { return names };
        while let Some((ext, next)) = der_element(exts, 0x30) {
            exts = next;
            let Some((oid, mut body)) = der_element(ext, 0x06) else { continue };
            if oid != [0x55, 0x1d, 0x11] {
                continue; // not subjectAltName (2.5.29.17)
            }
            if body.first() == Some(&0x01) {
                body = der_element(body, 0x01).map_or(&[][..], |(_, r)| r); // critical
            }
            let Some((value, _)) = der_element(body, 0x04) else { return names };
            let Some((mut general, _)) = der_element(value, 0x30) else { return names };
            while let Some((tag, text, next)) = any_element(general) {
                general = next;
                // rfc822Name [1], dNSName [2], uniformResourceIdentifier [6]: IA5String.
                if matches!(tag, 0x81 | 0x82 | 0x86)
                    && let Ok(s) = std::str::from_utf8(text)
                {
                    names.push(s.to_string());
                }
            }
        }
    }
    names
}

/// Any one DER element: (tag, contents, what follows).
fn any_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let &tag = input.first()?;
    let (content, rest) = der_element(input, tag)?;
    Some((tag, content, rest))
}

/// The subject common name of a DER certificate, if it has one (bounds-checked: `None` for
/// anything malformed).
pub fn subject_common_name(der: &[u8]) -> Option<String> {
    let (mut subject, _) = subject_and_rest(der)?;
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }; at most one step per byte.
    while !subject.is_empty() {
        let (set, next) = der_element(subject, 0x31)?;
        subject = next;
        let (attr, _) = der_element(set, 0x30)?;
        let (oid, value) = der_element(attr, 0x06)?;
        if oid == [0x55, 0x04, 0x03] {
            let (&tag, _) = value.split_first()?;
            let (text, _) = der_element(value, tag)?;
            return String::from_utf8(text.to_vec()).ok();
        }
    }
    None
}

/// One DER element with tag `tag` at the start of `input`: (its contents, what follows).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = input.split_first()?;
    if t != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// The broker id a broker certificate names: subject CN `broker-<id>`.
pub fn broker_id_of(der: &[u8]) -> Option<u64> {
    subject_common_name(der)?.strip_prefix("broker-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DnType, KeyPair};

    use super::*;

    fn cert(cn: &str) -> Vec<u8> {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::OrganizationName, "Silt");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec()
    }

    #[test]
    fn the_common_name_and_broker_id_come_from_the_subject() {
        assert_eq!(subject_common_name(&cert("broker-3")).as_deref(), Some("broker-3"));
        assert_eq!(broker_id_of(&cert("broker-3")), Some(3));
        assert_eq!(broker_id_of(&cert("alice")), None);
        assert_eq!(broker_id_of(&cert("broker-x")), None);
    }

    #[test]
    fn subject_alternative_names_are_read_in_order() {
        let mut p = CertificateParams::new(vec!["svc.example".to_string()]).unwrap();
        p.subject_alt_names
            .insert(0, rcgen::SanType::Rfc822Name("ops@example.com".try_into().unwrap()));
        p.subject_alt_names.push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
        p.subject_alt_names.push(rcgen::SanType::URI("spiffe://silt/ops".try_into().unwrap()));
        p.distinguished_name.push(DnType::CommonName, "ops-cn");
        let der = p.self_signed(&KeyPair::generate().unwrap()).unwrap().der().to_vec();
        assert_eq!(
            subject_alt_names(&der),
            ["ops@example.com", "svc.example", "spiffe://silt/ops"],
            "e-mail, DNS and URI names; the IP address is not a name"
        );
        assert_eq!(PrincipalSource::San.name_of(&der).as_deref(), Some("ops@example.com"));
        assert_eq!(PrincipalSource::Cn.name_of(&der).as_deref(), Some("ops-cn"));
        assert!(subject_alt_names(&cert("ip-only")).is_empty(), "an IP address SAN is no name");
        for cut in 0..der.len() {
            let _ = subject_alt_names(&der[..cut]);
        }
    }

    #[test]
    fn malformed_certificates_have_no_name_and_do_not_panic() {
        let good = cert("broker-1");
        for cut in 0..good.len() {
            let _ = subject_common_name(&good[..cut]);
        }
        let mut flipped = good.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = subject_common_name(&flipped);
            flipped[i] ^= 0xff;
        }
        assert_eq!(subject_common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject_common_name(&[]), None);
    }
}
