//! `silt` against a TLS broker (issue 17, first part): `--tls-ca` (and `--tls-cert`/`--tls-key`
//! for mTLS) connect; without them the command fails with a hint; a client certificate without
//! a CA is a usage error.

mod common;

use std::path::{Path, PathBuf};

use common::{TestBroker, json, stderr, stdout};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use silt_broker::BrokerConfig;

/// Writes a CA, a broker certificate for 127.0.0.1 and a client certificate into `dir`.
fn pki(dir: &Path) -> [PathBuf; 5] {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "Silt CLI test CA");
    let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |cn: &str, usage| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        (p.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    };
    let (server, server_key) = leaf("broker", ExtendedKeyUsagePurpose::ServerAuth);
    let (client, client_key) = leaf("admin", ExtendedKeyUsagePurpose::ClientAuth);
    let names = ["ca.crt", "broker.crt", "broker.key", "admin.crt", "admin.key"];
    let texts = [ca_pem, server, server_key, client, client_key];
    let mut i = 0;
    texts.map(|t| {
        let p = dir.join(names[i]);
        i += 1;
        std::fs::write(&p, t).unwrap();
        p
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn silt_connects_with_its_ca_and_certificate_and_explains_a_plaintext_failure() {
    let certs = tempfile::tempdir().unwrap();
    let [ca, cert, key, client, client_key] = pki(certs.path());
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_client_ca: Some(ca.clone()),
        ..BrokerConfig::for_test(dir.path())
    };
    let b = TestBroker::start_with(config, dir);
    let tls = ["--tls-ca", s(&ca), "--tls-cert", s(&client), "--tls-key", s(&client_key)];

    let o = b.silt(&[&tls[..], &["topic", "create", "secure", "-p", "1", "-r", "1"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt_stdin(&[&tls[..], &["produce", "secure"]].concat(), "over mTLS\n");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt(&[&tls[..], &["consume", "secure", "--from-beginning", "-n", "1"]].concat());
    assert!(stdout(&o).contains("over mTLS"), "{}{}", stdout(&o), stderr(&o));

    let o = b.silt(&["--connect-timeout-ms", "1000", "topic", "list"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("--tls-ca"), "a hint at TLS: {}", stderr(&o));
    let o = b.silt(&["--connect-timeout-ms", "1000", "--tls-ca", s(&ca), "topic", "list"]);
    assert_eq!(o.status.code(), Some(1), "no client certificate: {}", stderr(&o));

    let o = b.silt(&["--tls-cert", s(&client), "--tls-key", s(&client_key), "topic", "list"]);
    assert_eq!(o.status.code(), Some(2), "a certificate without a CA: {}", stderr(&o));
}

#[test]
fn users_acls_and_profiles_from_the_command_line() {
    let certs = tempfile::tempdir().unwrap();
    let [ca, cert, key, admin, admin_key] = pki(certs.path());
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        tls_cert: Some(cert),
        tls_key: Some(key),
        tls_client_ca: Some(ca.clone()),
        auth: true,
        super_users: vec!["User:admin".to_string()],
        ..BrokerConfig::for_test(dir.path())
    };
    let b = TestBroker::start_with(config, dir);
    let root = ["--tls-ca", s(&ca), "--tls-cert", s(&admin), "--tls-key", s(&admin_key)];
    let alice = ["--tls-ca", s(&ca), "--user", "alice"];
    let pw = [("SILT_PASSWORD", "alice-pw")];

    // The super user (its certificate) creates alice; her password comes from SILT_PASSWORD.
    let o = b.silt_env(&[&root[..], &["user", "create", "alice"]].concat(), "", &pw);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("User:alice"), "{}", stdout(&o));
    let o = b.silt(&[&root[..], &["-o", "json", "user", "list"]].concat());
    assert_eq!(json(&o)["users"][0]["name"], "alice", "{}", stdout(&o));

    // Alice without ACLs: refused, exit 1, with the code.
    let o = b.silt_env(
        &[&alice[..], &["topic", "create", "t", "-p", "1", "-r", "1"]].concat(),
        "",
        &pw,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("(TOPIC_AUTHORIZATION_FAILED)"), "{}", stderr(&o));
    let o = b.silt_env(&[&alice[..], &["acl", "list"]].concat(), "", &pw);
    assert!(stderr(&o).contains("(CLUSTER_AUTHORIZATION_FAILED)"), "{}", stderr(&o));
    let wrong = [("SILT_PASSWORD", "nope")];
    let o = b.silt_env(&[&alice[..], &["topic", "list"]].concat(), "", &wrong);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("(AUTHENTICATION_FAILED)"), "{}", stderr(&o));

    // An ACL lets her create topics; listing shows it; removing it refuses her again.
    let grant = ["acl", "add", "--allow", "User:alice", "--operation", "create", "--cluster"];
    let o = b.silt(&[&root[..], &grant[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt_env(
        &[&alice[..], &["topic", "create", "t", "-p", "1", "-r", "1"]].concat(),
        "",
        &pw,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt(&[&root[..], &["-o", "json", "acl", "list", "--allow", "User:alice"]].concat());
    let acls = json(&o);
    assert_eq!(acls["acls"][0]["operation"], "create", "{acls}");
    assert_eq!(acls["acls"][0]["resource_type"], "cluster", "{acls}");
    let revoke = ["acl", "remove", "--allow", "User:alice", "--operation", "create", "--cluster"];
    let o = b.silt(&[&root[..], &revoke[..]].concat());
    assert!(stdout(&o).contains("removed 1 ACL"), "{}{}", stdout(&o), stderr(&o));

    // A profile holds the CA and user; the password still comes from the environment.
    let profile = certs.path().join("config.toml");
    let text = format!("[profiles.alice]\ntls_ca = {:?}\nuser = \"alice\"\n", s(&ca));
    std::fs::write(&profile, text).unwrap();
    let env = [("SILT_CONFIG", s(&profile)), ("SILT_PASSWORD", "alice-pw")];
    let o = b.silt_env(&["--profile", "alice", "-o", "json", "topic", "list"], "", &env);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.silt_env(&["--profile", "nobody", "topic", "list"], "", &env);
    assert_eq!(o.status.code(), Some(2), "an unknown profile: {}", stderr(&o));

    // A password is never sent without TLS.
    let o = b.silt_env(&["--user", "alice", "topic", "list"], "", &pw);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
