//! `Offset`: the position of a record in a partition log.

use std::fmt;

/// The 64-bit position of a record in one partition's log. Offsets start at 0 and rise by one per
/// record; a batch of `n` records occupies `n` consecutive offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub u64);

impl Offset {
    /// The first offset of every partition.
    pub const ZERO: Offset = Offset(0);

    /// The raw value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The offset `n` records later, saturating instead of wrapping.
    #[must_use]
    pub const fn plus(self, n: u64) -> Offset {
        Offset(self.0.saturating_add(n))
    }

    /// The next offset.
    #[must_use]
    pub const fn next(self) -> Offset {
        self.plus(1)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u64> for Offset {
    fn from(v: u64) -> Self {
        Offset(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_saturates_instead_of_wrapping() {
        assert_eq!(Offset(u64::MAX - 1).plus(5), Offset(u64::MAX));
        assert_eq!(Offset(3).next(), Offset(4));
    }
}
