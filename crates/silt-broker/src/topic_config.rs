//! Topic configuration with Kafka's key names (and Silt's own `durability`): parsing and
//! validation of the string map clients send, the effective values, and the `LogConfig` they
//! imply. Pure: no I/O.

use std::collections::BTreeMap;

use silt_core::batch::Compression;
use silt_storage::LogConfig;

/// `retention.ms`
pub const RETENTION_MS: &str = "retention.ms";
/// `retention.bytes`
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `segment.bytes`
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// `segment.ms`
pub const SEGMENT_MS: &str = "segment.ms";
/// `min.insync.replicas`
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// `max.message.bytes`: the largest record batch the topic accepts.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// `cleanup.policy`
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// `unclean.leader.election.enable`
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";
/// `durability`: `fsync` (default) or `replicated`.
pub const DURABILITY: &str = "durability";
/// `compression.type`: `producer` (keep the producer's codec) or a codec the broker stores
/// every batch in (`uncompressed`/`none`, `gzip`, `snappy`, `lz4`, `zstd`).
pub const COMPRESSION_TYPE: &str = "compression.type";
/// `compression.gzip.level` (1-9) when the broker compresses with gzip.
pub const COMPRESSION_GZIP_LEVEL: &str = "compression.gzip.level";
/// `compression.zstd.level` (-7..-1, 1-22) when the broker compresses with zstd.
pub const COMPRESSION_ZSTD_LEVEL: &str = "compression.zstd.level";

/// Every key a topic accepts.
pub const KEYS: [&str; 12] = [
    RETENTION_MS,
    RETENTION_BYTES,
    SEGMENT_BYTES,
    SEGMENT_MS,
    MIN_INSYNC_REPLICAS,
    MAX_MESSAGE_BYTES,
    CLEANUP_POLICY,
    UNCLEAN_LEADER_ELECTION,
    DURABILITY,
    COMPRESSION_TYPE,
    COMPRESSION_GZIP_LEVEL,
    COMPRESSION_ZSTD_LEVEL,
];

/// When a write counts as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// On disk (fdatasync, group-committed) on every in-sync replica before it counts.
    Fsync,
    /// In every in-sync replica's page cache (Kafka's default); flushed in the background.
    Replicated,
}

/// Why a topic config was refused; names the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic config {key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), reason: reason.into() }
}

/// The effective configuration of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// `None` = keep forever (Kafka's `-1`).
    pub retention_ms: Option<i64>,
    /// `None` = no size limit (Kafka's `-1`).
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub min_insync_replicas: u32,
    pub max_message_bytes: usize,
    pub unclean_leader_election: bool,
    pub durability: Durability,
    /// `None`: `producer` (batches are stored with the codec they came with).
    pub compression: Option<Compression>,
    pub gzip_level: i32,
    pub zstd_level: i32,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            min_insync_replicas: 1,
            max_message_bytes: 1024 * 1024 + 12 * 1024,
            unclean_leader_election: false,
            durability: Durability::Fsync,
            compression: None,
            gzip_level: 6,
            zstd_level: 3,
        }
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| err(key, format!("{v:?} is not a valid number")))
}

fn parse_limit(key: &str, v: &str) -> Result<Option<i64>, ConfigError> {
    match parse_num::<i64>(key, v)? {
        -1 => Ok(None),
        n if n > 0 => Ok(Some(n)),
        n => Err(err(key, format!("{n} must be positive, or -1 for no limit"))),
    }
}

fn parse_level(key: &str, v: &str, codec: Compression) -> Result<i32, ConfigError> {
    let level = parse_num(key, v)?;
    codec.check_level(Some(level)).map_err(|e| err(key, e))?;
    Ok(level)
}

impl TopicConfig {
    /// The codec and level the broker stores batches in, when the topic names one.
    pub fn broker_compression(&self) -> Option<(Compression, Option<i32>)> {
        self.compression.map(|c| {
            let level = match c {
                Compression::Gzip => Some(self.gzip_level),
                Compression::Zstd => Some(self.zstd_level),
                _ => None,
            };
            (c, level)
        })
    }

    /// Applies `overrides` (key -> value, as clients send them) on top of `self`, checking each
    /// key and the rules between keys. `max_request_bytes` is the broker's gRPC request limit,
    /// which a batch must fit in.
    pub fn with_overrides(
        &self,
        overrides: &BTreeMap<String, String>,
        max_request_bytes: usize,
    ) -> Result<TopicConfig, ConfigError> {
        let mut c = self.clone();
        for (key, v) in overrides {
            match key.as_str() {
                RETENTION_MS => c.retention_ms = parse_limit(key, v)?,
                RETENTION_BYTES => c.retention_bytes = parse_limit(key, v)?.map(|n| n as u64),
                SEGMENT_BYTES => c.segment_bytes = parse_num(key, v)?,
                SEGMENT_MS => c.segment_ms = parse_num(key, v)?,
                MIN_INSYNC_REPLICAS => c.min_insync_replicas = parse_num(key, v)?,
                MAX_MESSAGE_BYTES => c.max_message_bytes = parse_num(key, v)?,
                CLEANUP_POLICY => match v.as_str() {
                    "delete" => {}
                    "compact" | "compact,delete" | "delete,compact" => {
                        return Err(err(key, "compaction is not supported yet; use \"delete\""));
                    }
                    other => return Err(err(key, format!("{other:?} is not delete or compact"))),
                },
                UNCLEAN_LEADER_ELECTION => {
                    c.unclean_leader_election = match v.as_str() {
                        "true" => true,
                        "false" => false,
                        other => return Err(err(key, format!("{other:?} is not true or false"))),
                    }
                }
                DURABILITY => {
                    c.durability = match v.as_str() {
                        "fsync" => Durability::Fsync,
                        "replicated" => Durability::Replicated,
                        other => {
                            return Err(err(key, format!("{other:?} is not fsync or replicated")));
                        }
                    }
                }
                COMPRESSION_TYPE => {
                    c.compression = match v.as_str() {
                        "producer" => None,
                        codec => Some(codec.parse().map_err(|e: String| err(key, e))?),
                    }
                }
                COMPRESSION_GZIP_LEVEL => c.gzip_level = parse_level(key, v, Compression::Gzip)?,
                COMPRESSION_ZSTD_LEVEL => c.zstd_level = parse_level(key, v, Compression::Zstd)?,
                other => return Err(err(other, "unknown config key")),
            }
        }
        c.validate(max_request_bytes)?;
        Ok(c)
    }

    /// Rules within and across keys.
    pub fn validate(&self, max_request_bytes: usize) -> Result<(), ConfigError> {
        if self.min_insync_replicas == 0 {
            return Err(err(MIN_INSYNC_REPLICAS, "must be at least 1"));
        }
        if self.segment_ms <= 0 {
            return Err(err(SEGMENT_MS, "must be positive"));
        }
        if !(silt_storage::MIN_SEGMENT_MAX_BYTES..=u64::from(u32::MAX))
            .contains(&self.segment_bytes)
        {
            return Err(err(
                SEGMENT_BYTES,
                format!("must be in [{}, {}]", silt_storage::MIN_SEGMENT_MAX_BYTES, u32::MAX),
            ));
        }
        let max_batch = max_request_bytes.saturating_sub(REQUEST_OVERHEAD_BYTES);
        if self.max_message_bytes < silt_core::batch::HEADER_LEN
            || self.max_message_bytes > max_batch
        {
            return Err(err(
                MAX_MESSAGE_BYTES,
                format!(
                    "must be in [{}, {max_batch}] (the broker's request limit less framing)",
                    silt_core::batch::HEADER_LEN
                ),
            ));
        }
        if self.max_message_bytes as u64 > self.segment_bytes {
            return Err(err(
                MAX_MESSAGE_BYTES,
                format!("exceeds {SEGMENT_BYTES} = {}", self.segment_bytes),
            ));
        }
        Ok(())
    }

    /// Every key with its effective value, as `DescribeTopics` shows it.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let limit = |v: Option<i64>| v.map_or("-1".to_string(), |n| n.to_string());
        BTreeMap::from([
            (RETENTION_MS.to_string(), limit(self.retention_ms)),
            (RETENTION_BYTES.to_string(), limit(self.retention_bytes.map(|n| n as i64))),
            (SEGMENT_BYTES.to_string(), self.segment_bytes.to_string()),
            (SEGMENT_MS.to_string(), self.segment_ms.to_string()),
            (MIN_INSYNC_REPLICAS.to_string(), self.min_insync_replicas.to_string()),
            (MAX_MESSAGE_BYTES.to_string(), self.max_message_bytes.to_string()),
            (CLEANUP_POLICY.to_string(), "delete".to_string()),
            (UNCLEAN_LEADER_ELECTION.to_string(), self.unclean_leader_election.to_string()),
            (
                COMPRESSION_TYPE.to_string(),
                self.compression.map_or("producer", Compression::name).to_string(),
            ),
            (COMPRESSION_GZIP_LEVEL.to_string(), self.gzip_level.to_string()),
            (COMPRESSION_ZSTD_LEVEL.to_string(), self.zstd_level.to_string()),
            (
                DURABILITY.to_string(),
                match self.durability {
                    Durability::Fsync => "fsync",
                    Durability::Replicated => "replicated",
                }
                .to_string(),
            ),
        ])
    }

    /// The partition log configuration these values imply.
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            segment_max_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_batch_bytes: self.max_message_bytes,
            ..LogConfig::default()
        }
    }
}

/// Room left in a request for everything but the batch (topic names, framing).
pub const REQUEST_OVERHEAD_BYTES: usize = 64 * 1024;

/// What a broker serves a topic with when it applies the topic's stored config (the image's
/// overrides). The controller validated the overrides, but against its own
/// limits: a broker with a smaller `max_request_bytes` may not be able to apply them. Falling
/// back to the defaults would silently change durability, `min.insync.replicas` and retention,
/// so it never does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConfigDecision {
    /// The stored config applies here.
    Apply(TopicConfig),
    /// It does not apply here; keep serving with the config this broker already had.
    KeepPrevious { config: TopicConfig, error: ConfigError },
    /// It does not apply here and the broker had none: the topic's partitions stay offline on
    /// this broker (not opened, not served) until it can apply one.
    Offline { error: ConfigError },
}

impl ConfigDecision {
    /// Decides from the stored config as this broker parsed it and the config it serves today.
    pub fn new(
        stored: Result<TopicConfig, ConfigError>,
        previous: Option<TopicConfig>,
    ) -> ConfigDecision {
        match (stored, previous) {
            (Ok(config), _) => ConfigDecision::Apply(config),
            (Err(error), Some(config)) => ConfigDecision::KeepPrevious { config, error },
            (Err(error), None) => ConfigDecision::Offline { error },
        }
    }

    /// The config to serve the topic with (`None`: offline here).
    pub fn config(&self) -> Option<&TopicConfig> {
        match self {
            ConfigDecision::Apply(c) | ConfigDecision::KeepPrevious { config: c, .. } => Some(c),
            ConfigDecision::Offline { .. } => None,
        }
    }

    /// Why the stored config does not apply here, if it does not.
    pub fn error(&self) -> Option<&ConfigError> {
        match self {
            ConfigDecision::Apply(_) => None,
            ConfigDecision::KeepPrevious { error, .. } | ConfigDecision::Offline { error } => {
                Some(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const LIMIT: usize = 8 * 1024 * 1024;

    #[test]
    fn kafka_keys_parse_into_effective_values() {
        let c = TopicConfig::default()
            .with_overrides(
                &map(&[
                    ("retention.ms", "-1"),
                    ("retention.bytes", "1048576"),
                    ("min.insync.replicas", "2"),
                    ("durability", "replicated"),
                    ("segment.bytes", "1048576"),
                    ("max.message.bytes", "65536"),
                    ("unclean.leader.election.enable", "true"),
                    ("cleanup.policy", "delete"),
                ]),
                LIMIT,
            )
            .unwrap();
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.retention_bytes, Some(1 << 20));
        assert_eq!(c.min_insync_replicas, 2);
        assert_eq!(c.durability, Durability::Replicated);
        assert!(c.unclean_leader_election);
        assert_eq!(c.to_map()["retention.ms"], "-1");
        assert_eq!(c.log_config().max_batch_bytes, 65536);
    }

    #[test]
    fn bad_values_name_the_key() {
        let bad = |k: &str, v: &str| {
            TopicConfig::default().with_overrides(&map(&[(k, v)]), LIMIT).unwrap_err()
        };
        assert_eq!(bad("retention.ms", "abc").key, "retention.ms");
        assert_eq!(bad("retention.ms", "0").key, "retention.ms");
        assert_eq!(bad("min.insync.replicas", "0").key, "min.insync.replicas");
        assert_eq!(bad("durability", "maybe").key, "durability");
        assert_eq!(bad("no.such.key", "1").key, "no.such.key");
        assert_eq!(bad("cleanup.policy", "compact").key, "cleanup.policy");
        assert_eq!(bad("max.message.bytes", "100000000").key, "max.message.bytes");
        assert_eq!(bad("segment.bytes", "10").key, "segment.bytes");
        assert_eq!(bad("compression.type", "brotli").key, "compression.type");
        assert_eq!(bad("compression.gzip.level", "10").key, "compression.gzip.level");
        assert_eq!(bad("compression.zstd.level", "0").key, "compression.zstd.level");
    }

    #[test]
    fn compression_type_is_producer_or_a_codec() {
        let with = |pairs: &[(&str, &str)]| {
            TopicConfig::default().with_overrides(&map(pairs), LIMIT).expect("valid")
        };
        let d = TopicConfig::default();
        assert_eq!(d.broker_compression(), None);
        assert_eq!(d.to_map()["compression.type"], "producer");
        let z = with(&[("compression.type", "zstd"), ("compression.zstd.level", "9")]);
        assert_eq!(z.broker_compression(), Some((Compression::Zstd, Some(9))));
        assert_eq!(z.to_map()["compression.type"], "zstd");
        let u = with(&[("compression.type", "uncompressed")]);
        assert_eq!(u.broker_compression(), Some((Compression::None, None)));
        assert_eq!(
            with(&[("compression.type", "lz4")]).broker_compression(),
            Some((Compression::Lz4, None))
        );
    }

    #[test]
    fn max_message_bytes_must_fit_a_segment() {
        let e = TopicConfig::default()
            .with_overrides(
                &map(&[("segment.bytes", "4096"), ("max.message.bytes", "8192")]),
                LIMIT,
            )
            .unwrap_err();
        assert_eq!(e.key, "max.message.bytes");
    }

    #[test]
    fn a_config_this_broker_cannot_apply_never_falls_back_to_the_defaults() {
        let strict = map(&[
            ("min.insync.replicas", "2"),
            ("durability", "fsync"),
            ("retention.ms", "-1"),
            ("max.message.bytes", "4194304"),
        ]);
        let small_limit = 2 * 1024 * 1024;
        let stored = TopicConfig::default().with_overrides(&strict, small_limit);
        assert!(stored.is_err(), "4 MiB batches do not fit 2 MiB requests");
        // Nothing served yet: offline here, not defaults.
        let d = ConfigDecision::new(stored.clone(), None);
        assert_eq!(d.config(), None);
        assert_eq!(d.error().map(|e| e.key.as_str()), Some("max.message.bytes"));
        // Served before with the old overrides: keeps exactly those.
        let previous = TopicConfig::default()
            .with_overrides(&map(&[("min.insync.replicas", "2"), ("durability", "fsync")]), LIMIT)
            .unwrap();
        let d = ConfigDecision::new(stored, Some(previous.clone()));
        assert_eq!(d.config(), Some(&previous));
        assert_eq!(d.config().map(|c| c.min_insync_replicas), Some(2));
        assert!(d.error().is_some());
    }

    #[test]
    fn a_config_that_applies_replaces_the_previous_one() {
        let stored = TopicConfig::default().with_overrides(&map(&[("retention.ms", "5")]), LIMIT);
        let d = ConfigDecision::new(stored.clone(), Some(TopicConfig::default()));
        assert_eq!(d, ConfigDecision::Apply(stored.unwrap()));
        assert_eq!(d.error(), None);
    }
}
