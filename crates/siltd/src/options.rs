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
    /// gRPC listen address (default 127.0.0.1:9300).
    #[arg(long, env = "SILT_LISTEN")]
    pub listen: Option<String>,
    /// Address clients and brokers use to reach this broker (default: the listen address).
    #[arg(long, env = "SILT_ADVERTISE")]
    pub advertise: Option<String>,
    /// HTTP address for health checks (default 127.0.0.1:9301).
    #[arg(long, env = "SILT_HTTP")]
    pub http: Option<String>,
    /// Data directory.
    #[arg(long, env = "SILT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Initial metadata quorum voters, ID@HOST:PORT,... (absent: a single-broker cluster).
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
        }
        if let Some(v) = &self.listen {
            c.listen = v.clone();
        }
        if let Some(v) = &self.advertise {
            c.advertise = Some(v.clone());
        }
        if let Some(v) = &self.http {
            c.http = v.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

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
