//! Authentication and ACLs (issue 17): password logins are checked against SCRAM credentials
//! and failed ones slowed; a request without a principal is refused; a principal without ACLs
//! can do nothing; each operation is allowed by exactly its ACL and refused by a deny; internal
//! topics are written only by brokers; a client certificate's CN is a principal.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::pki::{Ca, write};
use rcgen::ExtendedKeyUsagePurpose;
use silt_broker::tls::PrincipalSource;
use silt_broker::{Broker, BrokerConfig};
use silt_client::{
    Acks, Client, ClientError, ConnectOptions, ConsumerConfig, Credentials, ProducerConfig,
    ProducerRecord, Seek, TlsOptions, TopicPartition,
};
use silt_proto::v1::{self, ErrorCode};
use tokio::sync::oneshot;

/// A broker with TLS, optional client certificates from `ca`, authentication and ACLs on, and
/// `User:admin` as super user.
async fn auth_broker(dir: &Path, ca: &Ca) -> (String, oneshot::Sender<()>) {
    auth_broker_with(dir, ca, PrincipalSource::Cn).await
}

async fn auth_broker_with(
    dir: &Path,
    ca: &Ca,
    principal: PrincipalSource,
) -> (String, oneshot::Sender<()>) {
    let (cert, key) = ca.sign("broker-1", ExtendedKeyUsagePurpose::ServerAuth);
    let mut config = BrokerConfig::for_test(dir.join("data"));
    config.tls_cert = Some(write(dir, "b.crt", &cert));
    config.tls_key = Some(write(dir, "b.key", &key));
    config.tls_client_ca = Some(write(dir, "ca.crt", &ca.pem));
    config.auth = true;
    config.super_users = vec!["User:admin".to_string()];
    config.tls_principal = principal;
    let broker = Broker::bind(config).await.expect("binds with auth");
    let addr = broker.local_addr().to_string();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        broker
            .run(async {
                let _ = rx.await;
            })
            .await
            .expect("runs");
    });
    (addr, tx)
}

fn trusting(ca: &Ca) -> TlsOptions {
    TlsOptions { ca_pem: ca.pem.clone().into_bytes(), identity: None }
}

/// TLS with a client certificate whose CN is `cn`.
fn certificate(ca: &Ca, cn: &str) -> TlsOptions {
    let (cert, key) = ca.sign(cn, ExtendedKeyUsagePurpose::ClientAuth);
    TlsOptions { ca_pem: ca.pem.clone().into_bytes(), identity: Some((cert.into(), key.into())) }
}

async fn connect(
    addr: &str,
    tls: TlsOptions,
    login: Option<(&str, &str)>,
) -> Result<Client, ClientError> {
    let credentials =
        login.map(|(u, p)| Credentials { user: u.to_string(), password: p.to_string() });
    let options = ConnectOptions {
        within: Duration::from_secs(30),
        tls: Some(tls),
        credentials,
        ..Default::default()
    };
    Client::connect_with(&[addr.to_string()], options).await
}

/// The super user, logged in with its certificate.
async fn admin(addr: &str, ca: &Ca) -> Client {
    connect(addr, certificate(ca, "admin"), None).await.expect("the admin certificate logs in")
}

async fn produce(client: &Client, topic: &str) -> Result<i64, Option<ErrorCode>> {
    let producer = client
        .try_producer(ProducerConfig { acks: Acks::All, ..ProducerConfig::default() })
        .expect("producer");
    let record = ProducerRecord::new(topic, "v".to_string());
    let sent = producer.send(record).await.map_err(|e| e.code())?;
    sent.await.map(|m| m.offset).map_err(|e| e.code)
}

/// Records of partition 0 of `topic` from the start, or the error code of the first fetch.
async fn consume(client: &Client, topic: &str) -> Result<usize, Option<ErrorCode>> {
    let mut c = client.consumer(ConsumerConfig::default());
    let tp = TopicPartition { topic: topic.to_string(), partition: 0 };
    c.assign(vec![tp], Seek::Earliest).await.map_err(|e| e.code())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = c.poll().await.map_err(|e| e.code())?;
        if !got.is_empty() || Instant::now() > deadline {
            return Ok(got.len());
        }
    }
}

fn acl(principal: &str, rt: v1::ResourceType, name: &str, op: v1::AclOperation) -> v1::Acl {
    v1::Acl {
        principal: principal.to_string(),
        resource_type: rt as i32,
        resource_name: name.to_string(),
        pattern: v1::PatternType::Literal as i32,
        operation: op as i32,
        permission: v1::AclPermission::Allow as i32,
    }
}

fn topic_names(m: &v1::MetadataResponse) -> Vec<String> {
    m.topics.iter().filter(|t| t.error_code == 0).map(|t| t.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_are_verified_failures_are_slowed_and_no_principal_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt auth test CA");
    let (addr, _stop) = auth_broker(tmp.path(), &ca).await;
    let root = admin(&addr, &ca).await;
    root.admin().put_user("alice", "s3cret pass").await.expect("the super user creates users");
    let users = root.admin().list_users().await.unwrap();
    assert_eq!(users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["alice"]);

    connect(&addr, trusting(&ca), Some(("alice", "s3cret pass"))).await.expect("right password");

    let anonymous = connect(&addr, trusting(&ca), None).await.expect_err("no principal");
    let why = anonymous.authentication_failure().expect("refused as unauthenticated");
    assert!(why.contains("authentication required"), "{why}");
    assert!(!anonymous.is_retriable(), "a refusal is not retried");

    // Wrong passwords: each failure from this address doubles the wait before the next
    // attempt is verified (200 ms, 400 ms, 800 ms, ...).
    let mut took = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let e = connect(&addr, trusting(&ca), Some(("alice", "guess"))).await.expect_err("wrong");
        assert!(e.authentication_failure().is_some_and(|w| w.contains("alice")), "{e}");
        took.push(started.elapsed());
    }
    assert!(took[3] >= Duration::from_millis(800), "the 4th failure was not slowed: {took:?}");
    let e = connect(&addr, trusting(&ca), Some(("mallory", "x"))).await.expect_err("unknown user");
    assert!(e.authentication_failure().is_some(), "{e}");
    connect(&addr, trusting(&ca), Some(("alice", "s3cret pass"))).await.expect("still logs in");

    // A deleted user cannot log in any more; deleting it twice names the missing resource.
    root.admin().delete_user("alice").await.unwrap();
    let e = connect(&addr, trusting(&ca), Some(("alice", "s3cret pass"))).await.expect_err("gone");
    assert!(e.authentication_failure().is_some(), "{e}");
    let again = root.admin().delete_user("alice").await.expect_err("no such user");
    assert_eq!(again.code(), Some(ErrorCode::ResourceNotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_without_acls_can_do_nothing_and_each_acl_allows_exactly_its_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt auth test CA");
    let (addr, _stop) = auth_broker(tmp.path(), &ca).await;
    let root = admin(&addr, &ca).await;
    let ra = root.admin();
    ra.create_topic("orders", 1, 1, Default::default()).await.unwrap();
    ra.create_topic("secret", 1, 1, Default::default()).await.unwrap();
    produce(&root, "orders").await.expect("the super user writes");
    ra.put_user("alice", "pw-alice").await.unwrap();
    let alice = connect(&addr, trusting(&ca), Some(("alice", "pw-alice"))).await.unwrap();
    let aa = alice.admin();

    // No ACL: nothing.
    assert!(topic_names(&alice.metadata(&[]).await.unwrap()).is_empty(), "sees no topic");
    let named = alice.metadata(&["orders".to_string()]).await.unwrap();
    assert_eq!(named.topics[0].error_code, ErrorCode::TopicAuthorizationFailed as i32);
    assert_eq!(produce(&alice, "orders").await, Err(Some(ErrorCode::TopicAuthorizationFailed)));
    let create =
        aa.create_topic("alices", 1, 1, Default::default()).await.expect_err("no create right");
    assert_eq!(create.code(), Some(ErrorCode::TopicAuthorizationFailed));
    let group = aa.group_offsets("g").await.expect_err("no group right");
    assert_eq!(group.code(), Some(ErrorCode::GroupAuthorizationFailed));
    let users = aa.list_users().await.expect_err("no cluster right");
    assert_eq!(users.code(), Some(ErrorCode::ClusterAuthorizationFailed));
    let grant = aa.create_acls(vec![acl(
        "User:alice",
        v1::ResourceType::Cluster,
        "",
        v1::AclOperation::All,
    )]);
    assert_eq!(
        grant.await.expect_err("no self-grant").code(),
        Some(ErrorCode::ClusterAuthorizationFailed)
    );

    // WRITE on orders: produce (and describe, which write implies), but not read.
    let write = acl("User:alice", v1::ResourceType::Topic, "orders", v1::AclOperation::Write);
    ra.create_acls(vec![write]).await.unwrap();
    produce(&alice, "orders").await.expect("write allows produce");
    assert_eq!(topic_names(&alice.metadata(&[]).await.unwrap()), ["orders"]);
    assert_eq!(consume(&alice, "orders").await, Err(Some(ErrorCode::TopicAuthorizationFailed)));
    assert_eq!(produce(&alice, "secret").await, Err(Some(ErrorCode::TopicAuthorizationFailed)));

    // READ on orders: fetch.
    ra.create_acls(vec![acl(
        "User:alice",
        v1::ResourceType::Topic,
        "orders",
        v1::AclOperation::Read,
    )])
    .await
    .unwrap();
    assert_eq!(consume(&alice, "orders").await, Ok(2), "read allows fetch");

    // A prefixed deny wins over the allow.
    let mut deny = acl("User:alice", v1::ResourceType::Topic, "ord", v1::AclOperation::Read);
    deny.pattern = v1::PatternType::Prefixed as i32;
    deny.permission = v1::AclPermission::Deny as i32;
    ra.create_acls(vec![deny.clone()]).await.unwrap();
    assert_eq!(consume(&alice, "orders").await, Err(Some(ErrorCode::TopicAuthorizationFailed)));
    produce(&alice, "orders").await.expect("a read deny leaves write alone");
    let filter = v1::AclFilter { permission: v1::AclPermission::Deny as i32, ..Default::default() };
    assert_eq!(ra.delete_acls(filter).await.unwrap(), vec![deny], "removes exactly the deny");
    assert_eq!(consume(&alice, "orders").await, Ok(3));

    // CREATE on the cluster: topics.
    ra.create_acls(vec![acl(
        "User:alice",
        v1::ResourceType::Cluster,
        "",
        v1::AclOperation::Create,
    )])
    .await
    .unwrap();
    aa.create_topic("alices", 1, 1, Default::default()).await.expect("create on the cluster");
    // READ on the group: its offsets.
    ra.create_acls(vec![acl("User:alice", v1::ResourceType::Group, "g", v1::AclOperation::Read)])
        .await
        .unwrap();
    assert!(aa.group_offsets("g").await.expect("read implies describe").is_empty());
    assert_eq!(
        aa.delete_group("g").await.expect_err("read is not delete").code(),
        Some(ErrorCode::GroupAuthorizationFailed)
    );
    let all = ra.list_acls(v1::AclFilter::default()).await.unwrap();
    assert_eq!(all.len(), 4, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_brokers_write_internal_topics_and_a_certificate_cn_is_a_principal() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt auth test CA");
    let (addr, _stop) = auth_broker(tmp.path(), &ca).await;
    let root = admin(&addr, &ca).await;
    root.admin().create_topic("orders", 1, 1, Default::default()).await.unwrap();
    // A group call creates __consumer_offsets.
    assert!(root.admin().group_offsets("g").await.unwrap().is_empty());
    assert_eq!(
        produce(&root, "__consumer_offsets").await,
        Err(Some(ErrorCode::TopicAuthorizationFailed)),
        "not even a super user forges group commits"
    );

    let bob = connect(&addr, certificate(&ca, "bob"), None).await.expect("bob's certificate");
    assert!(topic_names(&bob.metadata(&[]).await.unwrap()).is_empty());
    let describe = acl("User:bob", v1::ResourceType::Topic, "*", v1::AclOperation::Describe);
    root.admin().create_acls(vec![describe]).await.unwrap();
    let mut seen = topic_names(&bob.metadata(&[]).await.unwrap());
    seen.sort();
    assert_eq!(seen, ["__consumer_offsets", "orders"], "describe on every topic");
    // Writing needs WRITE on some topic before the idempotent producer even gets an id.
    assert_eq!(produce(&bob, "orders").await, Err(Some(ErrorCode::ClusterAuthorizationFailed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tls_principal_san_a_certificates_alternative_name_is_its_principal() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt auth test CA");
    let (addr, _stop) = auth_broker_with(tmp.path(), &ca, PrincipalSource::San).await;
    let email = rcgen::SanType::Rfc822Name("carol@example.com".try_into().unwrap());
    let (cert, key) = ca.sign_client_with_san("admin", email);
    let tls = TlsOptions {
        ca_pem: ca.pem.clone().into_bytes(),
        identity: Some((cert.into(), key.into())),
    };
    let carol = connect(&addr, tls, None).await.expect("carol's certificate");
    // CN "admin" is not the principal here: carol is no super user.
    let denied = carol.admin().list_users().await.expect_err("User:carol@example.com has no ACL");
    assert_eq!(denied.code(), Some(ErrorCode::ClusterAuthorizationFailed));
    let (admin_cert, admin_key) =
        ca.sign_client_with_san("x", rcgen::SanType::DnsName("admin".try_into().unwrap()));
    let tls = TlsOptions {
        ca_pem: ca.pem.clone().into_bytes(),
        identity: Some((admin_cert.into(), admin_key.into())),
    };
    let root = connect(&addr, tls, None).await.unwrap();
    let grant =
        acl("User:carol@example.com", v1::ResourceType::Cluster, "", v1::AclOperation::Describe);
    root.admin().create_acls(vec![grant]).await.expect("SAN admin is User:admin, a super user");
    assert!(carol.admin().list_users().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_id_needs_its_write_acl() {
    use silt_client::{TransactionalConfig, TransactionalProducer};
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new("Silt auth test CA");
    let (addr, _stop) = auth_broker(tmp.path(), &ca).await;
    let root = admin(&addr, &ca).await;
    let ra = root.admin();
    ra.create_topic("orders", 1, 1, Default::default()).await.unwrap();
    ra.put_user("bob", "pw-bob").await.unwrap();
    let write = acl("User:bob", v1::ResourceType::Topic, "orders", v1::AclOperation::Write);
    ra.create_acls(vec![write]).await.unwrap();
    let bob = connect(&addr, trusting(&ca), Some(("bob", "pw-bob"))).await.unwrap();

    // WRITE on the topic is not enough: the transactional id is a resource of its own.
    let refused = TransactionalProducer::new(&bob, TransactionalConfig::new("bob-app"))
        .await
        .expect_err("no right on the transactional id");
    assert_eq!(refused.code(), Some(ErrorCode::TransactionalIdAuthorizationFailed));
    let id = acl("User:bob", v1::ResourceType::TransactionalId, "bob-app", v1::AclOperation::Write);
    ra.create_acls(vec![id]).await.unwrap();
    let mut p = TransactionalProducer::new(&bob, TransactionalConfig::new("bob-app"))
        .await
        .expect("WRITE on the transactional id");
    p.begin().unwrap();
    p.send(ProducerRecord::new("orders", "in a transaction".to_string())).await.unwrap();
    p.commit().await.expect("commits");
    // Another id stays closed to bob.
    let other = TransactionalProducer::new(&bob, TransactionalConfig::new("someone-else")).await;
    assert_eq!(
        other.expect_err("not bob's").code(),
        Some(ErrorCode::TransactionalIdAuthorizationFailed)
    );
}
