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
