//! Command-line flags of `siltd` (CLI.md) and how they layer over the config file and the
//! `SILT_*` environment: file < env < flags.

use std::path::PathBuf;

use clap::Parser;
use silt_broker::BrokerConfig;
use silt_broker::config::BrokerConfigError;

/// `siltd`: the Silt broker.
#[derive(Debug, Parser)]
#[command(name = "siltd", version, about = "The Silt broker")]
pub struct Options {
    /// TOML configuration file (see deploy/siltd.toml).
    #[arg(long, env = "SILT_CONFIG")]
    pub config: Option<PathBuf>,
    /// This broker's id.
    #[arg(long, env = "SILT_NODE_ID")]
    pub node_id: Option<u64>,
    /// Derive the id from a StatefulSet pod name: `silt-2` -> 3 (ordinal + 1). Used when
    /// --node-id is not given (Kubernetes: set it from the pod's `metadata.name`).
    #[arg(long, env = "SILT_NODE_ID_FROM_ORDINAL")]
    pub node_id_from_ordinal: Option<String>,
    /// gRPC listen address (default 127.0.0.1:9300).
    #[arg(long, env = "SILT_LISTEN")]
    pub listen: Option<String>,
    /// Address clients and brokers use to reach this broker (default: the listen address).
    #[arg(long, env = "SILT_ADVERTISE")]
    pub advertise: Option<String>,
    /// gRPC address of the internal services: Raft, controller, replication (default: the
    /// listen port + 2). Never the client port; expose it to the other brokers only.
    #[arg(long, env = "SILT_INTERNAL_LISTEN")]
    pub internal_listen: Option<String>,
    /// Routes to the peers' internal services, ID@HOST:PORT,... (default: each --peers entry
    /// with its port + 2).
    #[arg(long, env = "SILT_INTERNAL_PEERS")]
    pub internal_peers: Option<String>,
    /// TLS on the client listener: certificate chain (PEM); with --tls-key. Read again on
    /// SIGHUP.
    #[arg(long, env = "SILT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "SILT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mTLS. Needs --tls-cert.
    #[arg(long, env = "SILT_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Mutual TLS on the internal listener: peers must present a certificate this cluster CA
    /// (PEM) signed with subject CN broker-<id> of a quorum member; this broker calls them with
    /// --tls-cert/--tls-key. Needs --tls-cert.
    #[arg(long, env = "SILT_INTERNAL_TLS_CA")]
    pub internal_tls_ca: Option<PathBuf>,
    /// Authentication and ACLs: every request needs a principal (password login with --user,
    /// or a client certificate signed by --tls-client-ca) and an allowing ACL. Needs --tls-cert.
    #[arg(long, env = "SILT_AUTH")]
    pub auth: bool,
    /// Which name of a client certificate is its principal: cn (subject common name) or san
    /// (its first e-mail, DNS or URI subject alternative name).
    #[arg(long, env = "SILT_TLS_PRINCIPAL")]
    pub tls_principal: Option<silt_broker::tls::PrincipalSource>,
    /// Principals allowed everything without ACLs, User:NAME,...
    #[arg(long, env = "SILT_SUPER_USERS", value_delimiter = ',')]
    pub super_users: Option<Vec<String>>,
    /// Address of the Kafka-protocol listener (e.g. 0.0.0.0:9092; absent: none).
    #[arg(long, env = "SILT_KAFKA_LISTEN")]
    pub kafka_listen: Option<String>,
    /// HOST:PORT Kafka clients are told to use (default: the bound Kafka address).
    #[arg(long = "kafka-advertise", alias = "kafka-advertised", env = "SILT_KAFKA_ADVERTISE")]
    pub kafka_advertised: Option<String>,
    /// HTTP address for health checks (default 127.0.0.1:9301).
    #[arg(long, env = "SILT_HTTP")]
    pub http: Option<String>,
    /// Data directory.
    #[arg(long, env = "SILT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial metadata quorum voters, ID@HOST:PORT,... (absent: a cluster of this broker alone).
    #[arg(long, env = "SILT_PEERS")]
    pub peers: Option<String>,
    /// Rack (failure domain) of this broker.
    #[arg(long, env = "SILT_RACK")]
    pub rack: Option<String>,
}

impl Options {
    /// The effective configuration: the file (if any), then env and flags (clap already
    /// prefers a flag over its `SILT_*` variable), validated.
    pub fn config(&self) -> Result<BrokerConfig, BrokerConfigError> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| BrokerConfigError {
                    key: "config".into(),
                    reason: format!("{}: {e}", path.display()),
                })?;
                BrokerConfig::from_toml(&text)?
            }
            None => BrokerConfig::default(),
        };
        if let Some(v) = self.node_id {
            c.node_id = v;
        } else if let Some(name) = &self.node_id_from_ordinal {
            c.node_id = node_id_from_ordinal(name)?;
        }
        if let Some(v) = &self.listen {
            c.listen = v.clone();
        }
        if let Some(v) = &self.advertise {
            c.advertise = Some(v.clone());
        }
        if let Some(v) = &self.internal_listen {
            c.internal_listen = Some(v.clone());
        }
        if let Some(v) = &self.internal_peers {
            c.internal_peers = Some(v.clone());
        }
        if let Some(v) = &self.http {
            c.http = v.clone();
        }
        if let Some(v) = &self.tls_cert {
            c.tls_cert = Some(v.clone());
        }
        if let Some(v) = &self.tls_key {
            c.tls_key = Some(v.clone());
        }
        if let Some(v) = &self.tls_client_ca {
            c.tls_client_ca = Some(v.clone());
        }
        if let Some(v) = &self.internal_tls_ca {
            c.internal_tls_ca = Some(v.clone());
        }
        if self.auth {
            c.auth = true;
        }
        if let Some(v) = &self.kafka_listen {
            c.kafka_listen = Some(v.clone());
        }
        if let Some(v) = &self.kafka_advertised {
            c.kafka_advertised = Some(v.clone());
        }
        if let Some(v) = self.tls_principal {
            c.tls_principal = v;
        }
        if let Some(v) = &self.super_users {
            c.super_users = v.clone();
        }
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &self.peers {
            c.peers = Some(v.clone());
        }
        if let Some(v) = &self.rack {
            c.rack = Some(v.clone());
        }
        c.validate()?;
        Ok(c)
    }
}

/// `NAME-N` (a StatefulSet pod name) -> N + 1.
fn node_id_from_ordinal(name: &str) -> Result<u64, BrokerConfigError> {
    name.rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .and_then(|n| n.checked_add(1))
        .ok_or_else(|| BrokerConfigError {
            key: "node_id_from_ordinal".into(),
            reason: format!("{name:?} does not end in -ORDINAL"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_comes_from_a_pod_ordinal() {
        assert_eq!(node_id_from_ordinal("silt-0").unwrap(), 1);
        assert_eq!(node_id_from_ordinal("my-silt-12").unwrap(), 13);
        assert_eq!(node_id_from_ordinal("silt").unwrap_err().key, "node_id_from_ordinal");
        let o = Options::parse_from(["siltd", "--node-id-from-ordinal", "silt-2"]);
        assert_eq!(o.config().unwrap().node_id, 3);
        let o =
            Options::parse_from(["siltd", "--node-id", "9", "--node-id-from-ordinal", "silt-2"]);
        assert_eq!(o.config().unwrap().node_id, 9, "an explicit id wins");
    }

    #[test]
    fn flags_override_the_file_and_bad_values_name_the_key() {
        let d = std::env::temp_dir().join(format!("siltd-opt-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let file = d.join("siltd.toml");
        std::fs::write(&file, "node_id = 7\nlisten = \"127.0.0.1:9400\"\n").unwrap();
        let o = Options::parse_from([
            "siltd",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9500",
        ]);
        let c = o.config().unwrap();
        assert_eq!((c.node_id, c.listen.as_str()), (7, "127.0.0.1:9500"));
        let o = Options::parse_from(["siltd", "--listen", "not-an-address"]);
        assert_eq!(o.config().unwrap_err().key, "listen");
        std::fs::write(&file, "bogus = 1\n").unwrap();
        let o = Options::parse_from(["siltd", "--config", file.to_str().unwrap()]);
        assert!(o.config().unwrap_err().reason.contains("bogus"));
        let _ = std::fs::remove_dir_all(&d);
    }
}
