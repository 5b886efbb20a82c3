//! TLS for the harness: a test PKI (a CA, broker certificates with CN `broker-<id>`, client
//! certificates) and how the harness's own clients connect. A cluster started with
//! `ClusterSettings::tls` sets the clients' TLS here for as long as it lives (the fault tests
//! run one at a time), and every harness connection ([`connect`], [`endpoint`]) follows it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use silt_client::{Client, ClientError, ConnectOptions, TlsOptions};

/// A CA in a directory, signing broker and client certificates for 127.0.0.1.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    pub ca_pem: String,
    pub ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    pub fn new(dir: &Path) -> TestPki {
        let key = KeyPair::generate().expect("a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "Silt test cluster CA");
        let ca_pem = params.self_signed(&key).expect("CA certificate").pem();
        let ca_file = dir.join("ca.crt");
        std::fs::write(&ca_file, &ca_pem).expect("CA written");
        TestPki { dir: dir.to_owned(), ca_pem, ca_file, issuer: Issuer::new(params, key) }
    }

    fn sign(&self, cn: &str, usages: Vec<ExtendedKeyUsagePurpose>) -> (String, String) {
        let key = KeyPair::generate().expect("a key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = usages;
        (params.signed_by(&key, &self.issuer).expect("signed").pem(), key.serialize_pem())
    }

    /// Broker `id`'s certificate and key files (CN `broker-<id>`, server and client auth).
    pub fn broker(&self, id: u64) -> (PathBuf, PathBuf) {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let (cert, key) = self.sign(&format!("broker-{id}"), vec![ServerAuth, ClientAuth]);
        let (c, k) =
            (self.dir.join(format!("broker-{id}.crt")), self.dir.join(format!("broker-{id}.key")));
        std::fs::write(&c, cert).expect("certificate written");
        std::fs::write(&k, key).expect("key written");
        (c, k)
    }

    /// TLS options of a client that trusts this CA and presents a certificate for `cn`.
    pub fn client(&self, cn: &str) -> TlsOptions {
        let (cert, key) = self.sign(cn, vec![ExtendedKeyUsagePurpose::ClientAuth]);
        TlsOptions {
            ca_pem: self.ca_pem.clone().into_bytes(),
            identity: Some((cert.into_bytes(), key.into_bytes())),
        }
    }
}

static CLIENT_TLS: Mutex<Option<TlsOptions>> = Mutex::new(None);

/// Sets (or clears) the TLS of the harness's clients.
pub fn set_client_tls(tls: Option<TlsOptions>) {
    *CLIENT_TLS.lock().unwrap_or_else(|p| p.into_inner()) = tls;
}

/// The TLS of the harness's clients (`None`: plaintext).
pub fn client_tls() -> Option<TlsOptions> {
    CLIENT_TLS.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// A client of `bootstrap`, with the harness's TLS.
pub async fn connect(bootstrap: &[String]) -> Result<Client, ClientError> {
    Client::connect_with(bootstrap, ConnectOptions { tls: client_tls(), ..Default::default() })
        .await
}

/// A raw gRPC endpoint for `addr`, with the harness's TLS.
pub fn endpoint(addr: &str) -> tonic::transport::Endpoint {
    match client_tls() {
        None => {
            tonic::transport::Endpoint::from_shared(format!("http://{addr}")).expect("a broker url")
        }
        Some(t) => tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .expect("a broker url")
            .tls_config(t.tonic_config())
            .expect("TLS settings"),
    }
}

/// As the super user `User:admin`: every right on every topic, group and the cluster to
/// `User:harness` (the harness's clients), through ACLs, so the fault tests run with
/// authentication and authorization on.
pub async fn grant_harness(bootstrap: &[String], pki: &TestPki) {
    use silt_proto::v1::{Acl, AclOperation, AclPermission, PatternType, ResourceType};
    let options = ConnectOptions { tls: Some(pki.client("admin")), ..Default::default() };
    let admin = Client::connect_with(bootstrap, options).await.expect("the admin logs in");
    let acls = [ResourceType::Topic, ResourceType::Group, ResourceType::Cluster]
        .into_iter()
        .map(|rt| Acl {
            principal: "User:harness".into(),
            resource_type: rt as i32,
            resource_name: "*".into(),
            pattern: PatternType::Literal as i32,
            operation: AclOperation::All as i32,
            permission: AclPermission::Allow as i32,
        })
        .collect();
    admin.admin().create_acls(acls).await.expect("ACLs for the harness");
    // Every broker applies them before the test starts (each answers from its own image).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    for addr in bootstrap {
        loop {
            let seen = match endpoint(addr).connect().await {
                Ok(ch) => {
                    let mut s = silt_proto::v1::security_client::SecurityClient::new(ch);
                    let req = silt_proto::v1::ListAclsRequest { filter: None };
                    s.list_acls(req).await.map_or(0, |r| r.into_inner().acls.len())
                }
                Err(_) => 0,
            };
            if seen >= 3 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{addr} did not apply the ACLs");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
