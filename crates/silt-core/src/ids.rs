//! Small identifier newtypes used at every API boundary.

use std::fmt;

macro_rules! id_newtype {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw value.
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$inner> for $name {
            fn from(v: $inner) -> Self {
                $name(v)
            }
        }
    };
}

id_newtype!(
    /// The index of a partition within its topic, from 0.
    PartitionId(u32)
);
id_newtype!(
    /// A broker's id in the cluster, unique and stable across restarts.
    NodeId(u64)
);
id_newtype!(
    /// The generation of a partition's leadership: bumped by the controller at every leader
    /// change and stamped by the leader on every batch it appends.
    LeaderEpoch(u32)
);

impl LeaderEpoch {
    /// The epoch of a batch that no leader has stamped yet (as a producer sends it).
    pub const NONE: LeaderEpoch = LeaderEpoch(u32::MAX);
}

/// A random `u64` from the process's randomly keyed hasher, mixed with the clock (no rand
/// dependency): for incarnation ids, topic ids and the producer's partition choice.
pub fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), now))
}

/// A random 128-bit id as 32 hex digits (a topic id, KIP-516).
pub fn random_id128() -> String {
    format!("{:016x}{:016x}", random_u64(), random_u64())
}

#[cfg(test)]
mod random_tests {
    use super::*;

    #[test]
    fn random_ids_differ_and_have_32_hex_digits() {
        let a = random_id128();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, random_id128());
        assert_ne!(random_u64(), random_u64());
    }
}
