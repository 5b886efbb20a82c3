//! TLS on the client listener (issue 17, first part): TLS clients are served, plaintext and
//! wrong-CA clients are refused; with a client CA, clients without a certificate from it are
//! refused (mTLS); a reload serves the new certificate to new connections while open ones keep
//! working, and a reload from broken files keeps the previous certificate.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod common;

use common::pki::{Ca, write};
use rcgen::ExtendedKeyUsagePurpose;
use silt_broker::{Broker, BrokerConfig};
use silt_client::{Acks, Client, ConnectOptions, ProducerConfig, ProducerRecord, TlsOptions};
use tokio::sync::oneshot;

/// A broker whose client listener serves `cert`/`key`, requiring client certificates from
/// `client_ca` if given; stops when the sender is dropped.
async fn tls_broker(
    dir: &Path,
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
) -> (String, std::sync::Arc<silt_broker::tls::ServerTls>, oneshot::Sender<()>) {
    let mut config = BrokerConfig::for_test(dir.join("data"));
    config.tls_cert = Some(cert);
    config.tls_key = Some(key);
    config.tls_client_ca = client_ca;
    let broker = Broker::bind(config).await.expect("binds with TLS");
    let addr = broker.local_addr().to_string();
    let tls = broker.tls().expect("TLS is on");
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        broker
            .run(async {
                let _ = rx.await;
            })
            .await
            .expect("runs");
    });
    (addr, tls, tx)
}

async fn connect(addr: &str, tls: Option<TlsOptions>, within: Duration) -> Result<Client, String> {
    Client::connect_with(
        &[addr.to_string()],
        ConnectOptions { within, tls, credentials: None, ..Default::default() },
    )
    .await
    .map_err(|e| e.to_string())
}

fn trusting(ca: &Ca) -> TlsOptions {
    TlsOptions { ca_pem: ca.pem.clone().into_bytes(), identity: None }
}

async fn produce_one(client: &Client, topic: &str, value: &str) -> i64 {
    let producer = client
        .try_producer(ProducerConfig { acks: Acks::All, ..ProducerConfig::default() })
        .expect("producer");
    let sent = producer.send(ProducerRecord::new(topic, value.to_string())).await.expect("queued");
    sent.await.expect("acknowledged").offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_serves_tls_clients_and_refuses_plaintext_and_other_cas() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt test CA");
    let (cert, key) = ca.sign("broker-1", ExtendedKeyUsagePurpose::ServerAuth);
    let (cert, key) = (write(tmp.path(), "b.crt", &cert), write(tmp.path(), "b.key", &key));
    let (addr, _tls, _stop) = tls_broker(tmp.path(), cert, key, None).await;

    let client = connect(&addr, Some(trusting(&ca)), Duration::from_secs(30)).await.expect("TLS");
    client.admin().create_topic("t", 1, 1, Default::default()).await.expect("topic created");
    assert_eq!(produce_one(&client, "t", "over TLS").await, 0);

    let plain = connect(&addr, None, Duration::from_secs(2)).await;
    assert!(plain.is_err(), "a plaintext client is refused");
    let other = Ca::new("Another CA");
    let wrong = connect(&addr, Some(trusting(&other)), Duration::from_secs(2)).await;
    assert!(wrong.is_err(), "a client that trusts another CA does not accept the broker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_only_clients_with_its_certificates_are_served() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt test CA");
    let (cert, key) = ca.sign("broker-1", ExtendedKeyUsagePurpose::ServerAuth);
    let (cert, key) = (write(tmp.path(), "b.crt", &cert), write(tmp.path(), "b.key", &key));
    let ca_file = write(tmp.path(), "ca.crt", &ca.pem);
    let (addr, tls, _stop) = tls_broker(tmp.path(), cert, key, Some(ca_file)).await;
    assert!(tls.requires_client_certificates());

    let (c, k) = ca.sign("alice", ExtendedKeyUsagePurpose::ClientAuth);
    let with_cert =
        TlsOptions { identity: Some((c.into_bytes(), k.into_bytes())), ..trusting(&ca) };
    let client = connect(&addr, Some(with_cert), Duration::from_secs(30)).await.expect("mTLS");
    client.admin().create_topic("t", 1, 1, Default::default()).await.expect("topic created");
    assert_eq!(produce_one(&client, "t", "over mTLS").await, 0);

    let none = connect(&addr, Some(trusting(&ca)), Duration::from_secs(2)).await;
    assert!(none.is_err(), "a client without a certificate is refused");
    let other = Ca::new("Another CA");
    let (c, k) = other.sign("mallory", ExtendedKeyUsagePurpose::ClientAuth);
    let forged = TlsOptions { identity: Some((c.into_bytes(), k.into_bytes())), ..trusting(&ca) };
    let refused = connect(&addr, Some(forged), Duration::from_secs(2)).await;
    assert!(refused.is_err(), "a certificate from another CA is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_and_open_connections_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Ca::new("Old CA"), Ca::new("New CA"));
    let (cert, key) = old_ca.sign("broker-1", ExtendedKeyUsagePurpose::ServerAuth);
    let (cert_file, key_file) =
        (write(tmp.path(), "b.crt", &cert), write(tmp.path(), "b.key", &key));
    let (addr, tls, _stop) = tls_broker(tmp.path(), cert_file, key_file, None).await;
    let before = connect(&addr, Some(trusting(&old_ca)), Duration::from_secs(30)).await.unwrap();
    before.admin().create_topic("t", 1, 1, Default::default()).await.expect("topic created");
    assert_eq!(produce_one(&before, "t", "before").await, 0);

    let (cert, key) = new_ca.sign("broker-1", ExtendedKeyUsagePurpose::ServerAuth);
    write(tmp.path(), "b.crt", &cert);
    write(tmp.path(), "b.key", &key);
    tls.reload().expect("reloads");
    let after = connect(&addr, Some(trusting(&new_ca)), Duration::from_secs(5)).await;
    assert_eq!(produce_one(&after.expect("new certificate served"), "t", "after").await, 1);
    assert!(
        connect(&addr, Some(trusting(&old_ca)), Duration::from_secs(2)).await.is_err(),
        "new connections get the new certificate"
    );
    assert_eq!(produce_one(&before, "t", "still open").await, 2, "the open connection works");

    write(tmp.path(), "b.key", "not a key");
    let err = tls.reload().expect_err("a broken key is refused");
    assert!(err.contains("b.key"), "the error names the file: {err}");
    let still = connect(&addr, Some(trusting(&new_ca)), Duration::from_secs(5)).await;
    assert!(still.is_ok(), "the previous certificate is still served");
}

/// Three brokers whose internal listeners require mutual TLS with `ca`; returns the client and
/// internal addresses and the stop handles.
async fn mtls_cluster(dir: &Path, ca: &Ca) -> (Vec<String>, Vec<String>, Vec<oneshot::Sender<()>>) {
    use tokio::net::TcpListener;
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let client = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let internal = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listeners.push((client, internal));
    }
    let addr = |l: &TcpListener| l.local_addr().unwrap().to_string();
    let clients: Vec<String> = listeners.iter().map(|(c, _)| addr(c)).collect();
    let internals: Vec<String> = listeners.iter().map(|(_, i)| addr(i)).collect();
    let routes = |a: &[String]| {
        a.iter().enumerate().map(|(i, a)| format!("{}@{a}", i + 1)).collect::<Vec<_>>().join(",")
    };
    let ca_file = write(dir, "cluster-ca.crt", &ca.pem);
    let mut stops = Vec::new();
    for (i, (client, internal)) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let (cert, key) = ca.sign_for(&format!("broker-{id}"), usages);
        let mut config = BrokerConfig::for_test(dir.join(format!("b{id}")));
        config.node_id = id;
        config.listen = clients[i].clone();
        config.internal_listen = Some(internals[i].clone());
        config.peers = Some(routes(&clients));
        config.internal_peers = Some(routes(&internals));
        config.tls_cert = Some(write(dir, &format!("b{id}.crt"), &cert));
        config.tls_key = Some(write(dir, &format!("b{id}.key"), &key));
        config.internal_tls_ca = Some(ca_file.clone());
        let (tx, rx) = oneshot::channel();
        stops.push(tx);
        tokio::spawn(async move {
            let broker = Broker::bind_listeners(config, client, internal).await.expect("binds");
            broker
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("runs");
        });
    }
    (clients, internals, stops)
}

/// Calls `ReplicaFetch` on `addr` over TLS trusting `ca`, presenting `identity`; true if the
/// service answered.
async fn reaches_replication(addr: &str, ca: &Ca, identity: Option<(String, String)>) -> bool {
    use silt_proto::internal::replication_client::ReplicationClient;
    let mut tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem));
    if let Some((c, k)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(c, k));
    }
    let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5));
    let Ok(channel) = endpoint.connect().await else { return false };
    let mut replication = ReplicationClient::new(channel);
    let call = replication.replica_fetch(silt_proto::internal::ReplicaFetchRequest::default());
    // An empty request is answered (nothing to fetch); a refused peer gets a transport error.
    matches!(tokio::time::timeout(Duration::from_secs(10), call).await, Ok(Ok(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_replicate_over_mutual_tls_and_only_quorum_members_reach_internal_services() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt cluster CA");
    let (clients, internals, _stops) = mtls_cluster(tmp.path(), &ca).await;
    let client = connect(&clients[0], Some(trusting(&ca)), Duration::from_secs(60)).await.unwrap();
    let configs = [("min.insync.replicas".to_string(), "2".to_string())].into_iter().collect();
    client.admin().create_topic("r3", 1, 3, configs).await.expect("topic over three brokers");
    // acks=all with min ISR 2: the followers fetched over the internal mTLS links.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let offset = loop {
        let producer = client.try_producer(ProducerConfig::default()).unwrap();
        let sent = producer.send(ProducerRecord::new("r3", "replicated")).await.unwrap();
        match sent.await {
            Ok(m) => break m.offset,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("acks=all never succeeded: {e}"),
        }
    };
    assert!(offset >= 0);

    let usages = || vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let member = ca.sign_for("broker-2", usages());
    assert!(reaches_replication(&internals[0], &ca, Some(member)).await, "a member gets through");
    let user = ca.sign("alice", ExtendedKeyUsagePurpose::ClientAuth);
    assert!(!reaches_replication(&internals[0], &ca, Some(user)).await, "a client certificate");
    let stranger = ca.sign_for("broker-9", usages());
    assert!(!reaches_replication(&internals[0], &ca, Some(stranger)).await, "not in the quorum");
    let other = Ca::new("Another CA");
    let forged = other.sign_for("broker-2", usages());
    assert!(!reaches_replication(&internals[0], &ca, Some(forged)).await, "another CA");
    assert!(!reaches_replication(&internals[0], &ca, None).await, "no certificate");
}

/// RELIABILITY T15: expired certificates are refused both ways: a client does not accept a
/// broker whose certificate expired, and a broker requiring client certificates does not accept
/// an expired one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificates_are_refused_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt test CA");
    let ca_file = write(tmp.path(), "ca.crt", &ca.pem);
    let server = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let (cert, key) = ca.sign_with("broker-1", server.clone(), true);
    let (cert, key) = (write(tmp.path(), "old.crt", &cert), write(tmp.path(), "old.key", &key));
    let (addr, _tls, _stop) = tls_broker(&tmp.path().join("a"), cert, key, None).await;
    let refused = connect(&addr, Some(trusting(&ca)), Duration::from_secs(10)).await;
    let err = refused.expect_err("a broker with an expired certificate is not trusted");
    assert!(err.contains("expired"), "refused for its expiry: {err}");

    let (cert, key) = ca.sign_with("broker-1", server, false);
    let (cert, key) = (write(tmp.path(), "b.crt", &cert), write(tmp.path(), "b.key", &key));
    let (addr, _tls, _stop2) = tls_broker(&tmp.path().join("b"), cert, key, Some(ca_file)).await;
    let (c, k) = ca.sign_with("alice", vec![ExtendedKeyUsagePurpose::ClientAuth], false);
    let valid = TlsOptions { identity: Some((c.into_bytes(), k.into_bytes())), ..trusting(&ca) };
    let (c, k) = ca.sign_with("alice", vec![ExtendedKeyUsagePurpose::ClientAuth], true);
    let expired = TlsOptions { identity: Some((c.into_bytes(), k.into_bytes())), ..trusting(&ca) };
    assert!(connect(&addr, Some(valid), Duration::from_secs(30)).await.is_ok(), "control");
    let refused = connect(&addr, Some(expired), Duration::from_secs(3)).await;
    assert!(refused.is_err(), "an expired client certificate is refused");
}
