//! `LeaderEpochCache`: which leader epoch wrote which offsets, as (epoch, first offset) pairs, and
//! the `OffsetForLeaderEpoch` lookup that lets a follower find where its log diverged from a new
//! leader's (Kafka KIP-101/279).
//!
//! File format (`leader-epoch-checkpoint`, text, rewritten atomically on every change):
//! ```text
//! 0            format version
//! 2            number of entries
//! 0 0          epoch start_offset
//! 3 150
//! ```

use std::path::{Path, PathBuf};

use silt_core::{LeaderEpoch, Offset};

use crate::StorageError;
use crate::checkpoint::{LEADER_EPOCH_FILE, write_atomic};

/// The first offset written in one leader epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: LeaderEpoch,
    pub start_offset: Offset,
}

/// The epoch -> first offset map of one log; both columns strictly rise.
#[derive(Debug)]
pub struct LeaderEpochCache {
    dir: PathBuf,
    entries: Vec<EpochEntry>,
}

const FORMAT_VERSION: u32 = 0;
/// More entries than this in a checkpoint file is damage, not history.
const MAX_ENTRIES: usize = 1 << 20;

/// Parses a checkpoint; `Err` describes the damage.
fn parse(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    let version: u32 =
        lines.next().ok_or("empty")?.trim().parse().map_err(|e| format!("version: {e}"))?;
    if version != FORMAT_VERSION {
        return Err(format!("unknown version {version}"));
    }
    let count: usize =
        lines.next().ok_or("no count")?.trim().parse().map_err(|e| format!("count: {e}"))?;
    if count > MAX_ENTRIES {
        return Err(format!("count {count} is implausible"));
    }
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        let line = lines.next().ok_or(format!("entry {i} missing"))?;
        let mut parts = line.split_whitespace();
        let mut field = |name| -> Result<u64, String> {
            parts
                .next()
                .ok_or(format!("entry {i}: no {name}"))?
                .parse()
                .map_err(|e| format!("entry {i} {name}: {e}"))
        };
        let epoch = u32::try_from(field("epoch")?).map_err(|e| format!("entry {i}: {e}"))?;
        let start = field("start offset")?;
        let e = EpochEntry { epoch: LeaderEpoch(epoch), start_offset: Offset(start) };
        if let Some(p) = entries.last() as Option<&EpochEntry>
            && (e.epoch <= p.epoch || e.start_offset < p.start_offset)
        {
            return Err(format!("entry {i} does not rise"));
        }
        entries.push(e);
    }
    Ok(entries)
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir`. A missing file is an empty cache; a damaged one is an
    /// error text so the caller can rebuild the cache from the batches.
    pub(crate) fn load(dir: &Path) -> Result<LeaderEpochCache, String> {
        let path = dir.join(LEADER_EPOCH_FILE);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        Ok(LeaderEpochCache { dir: dir.to_owned(), entries })
    }

    /// An empty cache for `dir` (used when rebuilding).
    pub(crate) fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache { dir: dir.to_owned(), entries: Vec::new() }
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any batch was stamped.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| e.epoch)
    }

    /// The epoch that wrote `offset`, if known.
    pub fn epoch_for(&self, offset: Offset) -> Option<LeaderEpoch> {
        let i = self.entries.partition_point(|e| e.start_offset <= offset);
        i.checked_sub(1).map(|i| self.entries[i].epoch)
    }

    /// Records that `epoch` starts at `start_offset`, in memory only; returns whether anything
    /// changed (then the caller persists with [`save`](Self::save)). An epoch at or below the
    /// latest is ignored (it is already known), unless it would go backwards, which is an error.
    pub(crate) fn assign(
        &mut self,
        epoch: LeaderEpoch,
        start_offset: Offset,
    ) -> Result<bool, StorageError> {
        match self.entries.last() {
            Some(last) if epoch == last.epoch => Ok(false),
            Some(last) if epoch < last.epoch => {
                Err(StorageError::StaleEpoch { epoch: epoch.0, latest: last.epoch.0 })
            }
            _ => {
                // A new epoch starting below an older one's start means the older one wrote
                // nothing that survived: drop it.
                self.entries.retain(|e| e.start_offset < start_offset);
                self.entries.push(EpochEntry { epoch, start_offset });
                Ok(true)
            }
        }
    }

    /// Writes the checkpoint file durably.
    pub(crate) fn save(&self) -> Result<(), StorageError> {
        let mut text = format!("{FORMAT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch.0, e.start_offset.0));
        }
        write_atomic(&self.dir, LEADER_EPOCH_FILE, text.as_bytes())
    }

    /// Forgets epochs that start at or after `end` (the log was truncated to `end`); returns
    /// whether anything changed.
    pub(crate) fn truncate_from_end(&mut self, end: Offset) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end);
        before != self.entries.len()
    }

    /// Moves the first retained epoch's start up to the new log start; returns whether anything
    /// changed.
    pub(crate) fn truncate_from_start(&mut self, start: Offset) -> bool {
        let i = self.entries.partition_point(|e| e.start_offset <= start);
        if i <= 1 && self.entries.first().is_none_or(|e| e.start_offset >= start) {
            return false;
        }
        let keep_from = i.saturating_sub(1);
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = first.start_offset.max(start);
        }
        true
    }

    /// `OffsetForLeaderEpoch`: for a follower whose last epoch is `epoch`, the largest epoch this
    /// log knows that is <= `epoch`, and the offset where that epoch ended here (the start of the
    /// next epoch, or `log_end` if it is the latest). The follower truncates to
    /// `min(its log end, returned offset)`. `None` when `epoch` is older than every epoch here
    /// (the follower must truncate to the leader's log start, or fully).
    pub fn end_offset_for(
        &self,
        epoch: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let i = self.entries.partition_point(|e| e.epoch <= epoch);
        let found = self.entries.get(i.checked_sub(1)?)?;
        let end = self.entries.get(i).map_or(log_end, |next| next.start_offset);
        Some((found.epoch, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(pairs: &[(u32, u64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::empty(Path::new("/nonexistent"));
        for &(e, o) in pairs {
            c.assign(LeaderEpoch(e), Offset(o)).unwrap();
        }
        c
    }

    #[test]
    fn end_offset_for_follows_kafka_semantics() {
        let c = cache(&[(1, 0), (3, 100), (4, 150)]);
        let end = Offset(200);
        assert_eq!(c.end_offset_for(LeaderEpoch(1), end), Some((LeaderEpoch(1), Offset(100))));
        // Epoch 2 never led here: answer with epoch 1's end.
        assert_eq!(c.end_offset_for(LeaderEpoch(2), end), Some((LeaderEpoch(1), Offset(100))));
        assert_eq!(c.end_offset_for(LeaderEpoch(3), end), Some((LeaderEpoch(3), Offset(150))));
        assert_eq!(c.end_offset_for(LeaderEpoch(4), end), Some((LeaderEpoch(4), end)));
        assert_eq!(c.end_offset_for(LeaderEpoch(9), end), Some((LeaderEpoch(4), end)));
        assert_eq!(c.end_offset_for(LeaderEpoch(0), end), None);
    }

    #[test]
    fn assign_refuses_going_back_and_ignores_repeats() {
        let mut c = cache(&[(2, 10)]);
        assert!(!c.assign(LeaderEpoch(2), Offset(20)).unwrap());
        assert!(matches!(
            c.assign(LeaderEpoch(1), Offset(20)),
            Err(StorageError::StaleEpoch { .. })
        ));
        assert_eq!(c.epoch_for(Offset(9)), None);
        assert_eq!(c.epoch_for(Offset(10)), Some(LeaderEpoch(2)));
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 100), (4, 150)]);
        assert!(c.truncate_from_end(Offset(150)));
        assert_eq!(c.latest_epoch(), Some(LeaderEpoch(3)));
        assert!(c.truncate_from_start(Offset(120)));
        assert_eq!(c.entries(), &[EpochEntry { epoch: LeaderEpoch(3), start_offset: Offset(120) }]);
        assert!(!c.truncate_from_start(Offset(120)));
    }

    #[test]
    fn checkpoint_roundtrips_and_damage_is_reported() {
        let d = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::load(d.path()).unwrap();
        c.assign(LeaderEpoch(1), Offset(0)).unwrap();
        c.assign(LeaderEpoch(5), Offset(77)).unwrap();
        c.save().unwrap();
        let back = LeaderEpochCache::load(d.path()).unwrap();
        assert_eq!(back.entries(), c.entries());
        std::fs::write(d.path().join(LEADER_EPOCH_FILE), "0\n2\n1 0\n").unwrap();
        assert!(LeaderEpochCache::load(d.path()).is_err());
        std::fs::write(d.path().join(LEADER_EPOCH_FILE), "0\n99999999999\n").unwrap();
        assert!(LeaderEpochCache::load(d.path()).is_err());
        std::fs::write(d.path().join(LEADER_EPOCH_FILE), "0\n2\n5 0\n1 10\n").unwrap();
        assert!(LeaderEpochCache::load(d.path()).is_err());
    }
}
