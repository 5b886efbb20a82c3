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

/// `min.cleanable.dirty.ratio` (0-1): compacted logs are cleaned once this share is dirty.
pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
/// `min.compaction.lag.ms`: records younger than this are not compacted.
pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
/// `delete.retention.ms`: how long tombstones stay in a compacted log.
pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";

/// `share.dead.letter.topic`: where share groups write the records of this topic they archive
/// (rejected, or delivered `share_delivery_count_limit` times); empty = nowhere.
pub const SHARE_DEAD_LETTER_TOPIC: &str = "share.dead.letter.topic";

/// Every key a topic accepts.
pub const KEYS: [&str; 16] = [
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
    MIN_CLEANABLE_DIRTY_RATIO,
    MIN_COMPACTION_LAG_MS,
    DELETE_RETENTION_MS,
    SHARE_DEAD_LETTER_TOPIC,
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
    /// `cleanup.policy` has `delete` (retention deletes old segments).
    pub cleanup_delete: bool,
    /// `cleanup.policy` has `compact` (the cleaner keeps the latest record per key).
    pub cleanup_compact: bool,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub delete_retention_ms: i64,
    /// `None`: archived records of share groups are dropped.
    pub share_dead_letter_topic: Option<String>,
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
            cleanup_delete: true,
            cleanup_compact: false,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            delete_retention_ms: 24 * 3600 * 1000,
            share_dead_letter_topic: None,
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

fn parse_non_negative(key: &str, v: &str) -> Result<i64, ConfigError> {
    match parse_num::<i64>(key, v)? {
        n if n >= 0 => Ok(n),
        n => Err(err(key, format!("{n} must not be negative"))),
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
                CLEANUP_POLICY => {
                    (c.cleanup_delete, c.cleanup_compact) = match v.replace(' ', "").as_str() {
                        "delete" => (true, false),
                        "compact" => (false, true),
                        "compact,delete" | "delete,compact" => (true, true),
                        other => {
                            return Err(err(
                                key,
                                format!("{other:?} is not delete, compact or compact,delete"),
                            ));
                        }
                    }
                }
                MIN_CLEANABLE_DIRTY_RATIO => {
                    let r: f64 = parse_num(key, v)?;
                    if !(0.0..=1.0).contains(&r) {
                        return Err(err(key, format!("{r} is not within 0 and 1")));
                    }
                    c.min_cleanable_dirty_ratio = r;
                }
                MIN_COMPACTION_LAG_MS => c.min_compaction_lag_ms = parse_non_negative(key, v)?,
                DELETE_RETENTION_MS => c.delete_retention_ms = parse_non_negative(key, v)?,
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
                SHARE_DEAD_LETTER_TOPIC => {
                    c.share_dead_letter_topic = match v.trim() {
                        "" => None,
                        t => {
                            silt_core::TopicName::new(t).map_err(|e| err(key, e.to_string()))?;
                            Some(t.to_string())
                        }
                    }
                }
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
            (
                CLEANUP_POLICY.to_string(),
                match (self.cleanup_delete, self.cleanup_compact) {
                    (true, true) => "compact,delete",
                    (false, true) => "compact",
                    _ => "delete",
                }
                .to_string(),
            ),
            (MIN_CLEANABLE_DIRTY_RATIO.to_string(), self.min_cleanable_dirty_ratio.to_string()),
            (MIN_COMPACTION_LAG_MS.to_string(), self.min_compaction_lag_ms.to_string()),
            (DELETE_RETENTION_MS.to_string(), self.delete_retention_ms.to_string()),
            (UNCLEAN_LEADER_ELECTION.to_string(), self.unclean_leader_election.to_string()),
            (
                COMPRESSION_TYPE.to_string(),
                self.compression.map_or("producer", Compression::name).to_string(),
            ),
            (COMPRESSION_GZIP_LEVEL.to_string(), self.gzip_level.to_string()),
            (COMPRESSION_ZSTD_LEVEL.to_string(), self.zstd_level.to_string()),
            (
                SHARE_DEAD_LETTER_TOPIC.to_string(),
                self.share_dead_letter_topic.clone().unwrap_or_default(),
            ),
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
            cleanup_delete: self.cleanup_delete,
            cleanup_compact: self.cleanup_compact,
            min_cleanable_dirty_ratio: self.min_cleanable_dirty_ratio,
            min_compaction_lag_ms: self.min_compaction_lag_ms,
            delete_retention_ms: self.delete_retention_ms,
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
        assert_eq!(bad("cleanup.policy", "shred").key, "cleanup.policy");
        assert_eq!(bad("min.cleanable.dirty.ratio", "1.5").key, "min.cleanable.dirty.ratio");
        assert_eq!(bad("delete.retention.ms", "-1").key, "delete.retention.ms");
        assert_eq!(bad("max.message.bytes", "100000000").key, "max.message.bytes");
        assert_eq!(bad("segment.bytes", "10").key, "segment.bytes");
        assert_eq!(bad("compression.type", "brotli").key, "compression.type");
        assert_eq!(bad("compression.gzip.level", "10").key, "compression.gzip.level");
        assert_eq!(bad("compression.zstd.level", "0").key, "compression.zstd.level");
    }

    #[test]
    fn cleanup_policy_and_compaction_keys_reach_the_log_config() {
        let c = TopicConfig::default()
            .with_overrides(
                &map(&[
                    ("cleanup.policy", "compact"),
                    ("min.cleanable.dirty.ratio", "0.1"),
                    ("min.compaction.lag.ms", "5000"),
                    ("delete.retention.ms", "1000"),
                ]),
                LIMIT,
            )
            .unwrap();
        let l = c.log_config();
        assert!(l.cleanup_compact && !l.cleanup_delete);
        assert_eq!((l.min_compaction_lag_ms, l.delete_retention_ms), (5000, 1000));
        assert_eq!(c.to_map()["cleanup.policy"], "compact");
        let both = TopicConfig::default()
            .with_overrides(&map(&[("cleanup.policy", "delete, compact")]), LIMIT)
            .unwrap();
        assert_eq!(both.to_map()["cleanup.policy"], "compact,delete");
        assert!(both.log_config().cleanup_delete);
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
