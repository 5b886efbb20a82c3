//! How `__consumer_offsets` is created: its replication factor and its config overrides, as pure
//! functions over the cluster's size and liveness. The topic is created once and never widened,
//! so it is created only when it can get its full replication factor.

use std::collections::BTreeMap;

/// `__consumer_offsets` cannot be created yet: fewer brokers are alive than it needs replicas.
/// Retriable (the coordinator lookup answers `COORDINATOR_NOT_AVAILABLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("waiting for {needed} live brokers to create the internal topic ({alive} alive)")]
pub(crate) struct Waiting {
    pub needed: u32,
    pub alive: u32,
}

/// The replication factor to create `__consumer_offsets` with in a cluster: the configured one,
/// capped at the cluster's size — the larger of the Raft voters and the registered brokers, so a
/// one- or two-node cluster still gets its topic — and only once that many brokers are alive
/// (unfenced). Creating it while brokers are still registering, or one is briefly down, would
/// give it fewer replicas forever.
pub(crate) fn offsets_topic_rf(
    configured: u32,
    voters: usize,
    registered: usize,
    alive: usize,
) -> Result<u32, Waiting> {
    let size = u32::try_from(voters.max(registered)).unwrap_or(u32::MAX).max(1);
    let needed = configured.clamp(1, size);
    let alive = u32::try_from(alive).unwrap_or(u32::MAX);
    if alive < needed {
        return Err(Waiting { needed, alive });
    }
    Ok(needed)
}

/// The topic's config overrides for replication factor `rf`: compacted (each key's latest record
/// stays: a group's membership, each committed offset, each transactional id's state; deletions
/// are tombstones), fsynced, small segments (commits are small records, and the cleaner works on
/// sealed segments), and `min.insync.replicas` 2 once there are three replicas to lose one of.
pub(crate) fn offsets_topic_overrides(rf: u32, segment_bytes: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
        ("retention.bytes".to_string(), "-1".to_string()),
        ("min.insync.replicas".to_string(), if rf >= 3 { "2" } else { "1" }.to_string()),
        ("durability".to_string(), "fsync".to_string()),
        ("segment.bytes".to_string(), segment_bytes.to_string()),
        ("max.message.bytes".to_string(), segment_bytes.min(1024 * 1024).to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_while_brokers_are_still_registering() {
        // Three voters, only the first broker registered so far: not RF 1 forever.
        assert_eq!(offsets_topic_rf(3, 3, 1, 1), Err(Waiting { needed: 3, alive: 1 }));
        assert_eq!(offsets_topic_rf(3, 3, 2, 2), Err(Waiting { needed: 3, alive: 2 }));
        assert_eq!(offsets_topic_rf(3, 3, 3, 3), Ok(3));
    }

    #[test]
    fn waits_while_a_registered_broker_is_fenced() {
        assert_eq!(offsets_topic_rf(3, 3, 3, 2), Err(Waiting { needed: 3, alive: 2 }));
        // Brokers beyond the voters count toward the size too.
        assert_eq!(offsets_topic_rf(3, 1, 3, 2), Err(Waiting { needed: 3, alive: 2 }));
    }

    #[test]
    fn small_clusters_cap_the_factor_at_their_size() {
        assert_eq!(offsets_topic_rf(3, 1, 1, 1), Ok(1));
        assert_eq!(offsets_topic_rf(3, 2, 2, 2), Ok(2));
        assert_eq!(offsets_topic_rf(3, 2, 1, 1), Err(Waiting { needed: 2, alive: 1 }));
        // Nothing registered yet still needs one live broker.
        assert_eq!(offsets_topic_rf(3, 0, 0, 0), Err(Waiting { needed: 1, alive: 0 }));
    }

    #[test]
    fn larger_clusters_use_the_configured_factor() {
        assert_eq!(offsets_topic_rf(3, 5, 5, 4), Ok(3));
        assert_eq!(offsets_topic_rf(0, 5, 5, 5), Ok(1), "at least one replica");
    }

    #[test]
    fn min_insync_is_two_from_three_replicas() {
        let isr = |rf| offsets_topic_overrides(rf, 1 << 20)["min.insync.replicas"].clone();
        assert_eq!(
            (isr(1), isr(2), isr(3), isr(5)),
            ("1".into(), "1".into(), "2".into(), "2".into())
        );
    }

    #[test]
    fn the_waiting_message_names_the_brokers_needed() {
        let w = Waiting { needed: 3, alive: 2 };
        assert_eq!(
            w.to_string(),
            "waiting for 3 live brokers to create the internal topic (2 alive)"
        );
    }
}
