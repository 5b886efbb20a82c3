//! Compaction on the log's side: what may be cleaned ([`Log::clean_plan`]), and installing the
//! cleaned copies ([`Log::install_cleaned`]) with a swap that a crash at any point leaves either
//! undone or finishable:
//!
//! 1. the cleaner wrote `<base>.log.cleaned`, `.index.cleaned` and `.timeindex.cleaned`, each
//!    fsynced, and fsynced the directory;
//! 2. **commit**: rename `<base>.log.cleaned` to `<base>.log.swap`, fsync the directory;
//! 3. rename the two `.cleaned` indexes over the segment's indexes;
//! 4. delete the files of the segments merged into this one (cleaned segments are merged with
//!    their neighbours while they fit in `segment_max_bytes`), rename `<base>.log.swap` over
//!    `<base>.log`, fsync the directory.
//!
//! On open ([`finish_swaps`]), a `.swap` file means the swap was committed: steps 3 and 4 are
//! done (the indexes that are still `.cleaned`, the merged segments — those whose base lies in
//! the swap's offset range — deleted, then the log); any other `.cleaned` file is from
//! an uncommitted cleaning and is deleted. The old segment's bytes stay readable through the maps
//! readers hold (a rename unlinks the old file; it does not change it).

use std::path::Path;

use silt_core::Offset;

use super::Log;
use crate::StorageError;
use crate::checkpoint::{read_u64, write_u64};
use crate::cleaner::{CleanPlan, Cleaned, SegmentView};
use crate::error::IoContext;
use crate::file_util::sync_dir;
use crate::segment::{CLEANED_SUFFIX, SWAP_SUFFIX, Segment, segment_file_name};

/// The cleaner checkpoint: records before this offset are clean.
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Where [`Log::install_cleaned_until`] stops, to test a crash at each step of the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapStep {
    /// After the cleaned files are written, before the commit.
    Written,
    /// After the commit (the `.swap` rename).
    Committed,
    /// After the indexes were renamed, before the log.
    IndexesSwapped,
    /// The whole swap, and the segment replaced in memory.
    Done,
}

impl Log {
    /// The sealed segments a cleaning may cover: from the log start, those wholly below `upper`
    /// (the high watermark, or the last stable offset when lower) whose newest record is at least
    /// `min_compaction_lag_ms` old at `now_ms`. Never the active segment.
    fn cleanable(&self, upper: Offset, now_ms: i64) -> &[Segment] {
        let sealed = &self.segments[..self.segments.len() - 1];
        let lag = self.config.min_compaction_lag_ms;
        let n = sealed
            .iter()
            .take_while(|s| {
                s.next_offset() <= upper
                    && (lag == 0 || s.max_timestamp() <= now_ms.saturating_sub(lag))
            })
            .count();
        &sealed[..n]
    }

    /// Records before this offset were cleaned already.
    pub fn first_dirty_offset(&self) -> Offset {
        let at = read_u64(&self.dir, CLEANER_CHECKPOINT_FILE).ok().flatten().unwrap_or(0);
        Offset(at).min(self.log_end_offset()).max(self.log_start)
    }

    /// Dirty bytes over all bytes of the cleanable segments (0 when there are none): the
    /// cleaner's lag, as `min.cleanable.dirty.ratio` compares it.
    pub fn dirty_ratio(&self, upper: Offset, now_ms: i64) -> f64 {
        let segs = self.cleanable(upper, now_ms);
        let first_dirty = self.first_dirty_offset();
        let total: u64 = segs.iter().map(Segment::size).sum();
        let dirty: u64 =
            segs.iter().filter(|s| s.next_offset() > first_dirty).map(Segment::size).sum();
        if total == 0 { 0.0 } else { dirty as f64 / total as f64 }
    }

    /// What a cleaning would cover now, if the log is compacted and its dirty ratio has reached
    /// `min_cleanable_dirty_ratio` (see [`dirty_ratio`](Self::dirty_ratio)). The plan holds views
    /// of the segments, so [`CleanPlan::run`] can work without the log.
    pub fn clean_plan(&self, upper: Offset, now_ms: i64) -> Option<CleanPlan> {
        if !self.config.cleanup_compact || self.failed_sync.is_some() {
            return None;
        }
        let ratio = self.dirty_ratio(upper, now_ms);
        if ratio <= 0.0 || ratio < self.config.min_cleanable_dirty_ratio {
            return None;
        }
        let segments = self
            .cleanable(upper, now_ms)
            .iter()
            .map(|s| SegmentView {
                base: s.base(),
                next_offset: s.next_offset(),
                data: s.slice(0, s.size()),
            })
            .collect();
        Some(CleanPlan {
            dir: self.dir.clone(),
            config: self.config.clone(),
            segments,
            first_dirty: self.first_dirty_offset(),
            dirty_ratio: ratio,
            layout: self.layout,
        })
    }

    /// Swaps the cleaned copies in (see the module doc) and moves the cleaner checkpoint.
    /// Segments that changed since the plan (deleted by retention, truncated) keep their files
    /// and their cleaned copies are deleted. Returns the bytes freed.
    pub fn install_cleaned(&mut self, cleaned: Cleaned) -> Result<u64, StorageError> {
        self.install_cleaned_until(cleaned, SwapStep::Done)
    }

    /// [`install_cleaned`](Self::install_cleaned), stopping after `stop` on the first segment
    /// (a test's crash point: drop the log without closing it and reopen).
    #[doc(hidden)]
    pub fn install_cleaned_until(
        &mut self,
        cleaned: Cleaned,
        stop: SwapStep,
    ) -> Result<u64, StorageError> {
        self.check_online()?;
        let mut freed = 0u64;
        let same_log = cleaned.layout == self.layout && cleaned.dir == self.dir;
        let mut all = same_log;
        for c in &cleaned.segments {
            let n = c.replaces.len();
            let last = self.segments.len() - 1;
            let i = self.segments[..last].iter().position(|s| s.base() == c.base).filter(|i| {
                same_log
                    && i + n <= last
                    && self.segments[*i..*i + n]
                        .iter()
                        .zip(&c.replaces)
                        .all(|(s, (b, e))| s.base() == *b && s.next_offset() == *e)
            });
            let Some(i) = i else {
                discard_cleaned(&self.dir, c.base);
                all = false;
                continue;
            };
            if stop == SwapStep::Written {
                return Ok(0);
            }
            let old_size: u64 = self.segments[i..i + n].iter().map(Segment::size).sum();
            let others: Vec<Offset> = c.replaces[1..].iter().map(|(b, _)| *b).collect();
            swap_in(&self.dir, c.base, &others, stop)?;
            if stop != SwapStep::Done {
                return Ok(0);
            }
            let seg = Segment::open_trusted(&self.dir, c.base, &self.config)?;
            freed += old_size.saturating_sub(seg.size());
            // The replaced segments' maps stay alive in the readers' slices.
            drop(self.segments.splice(i..i + n, [seg]));
        }
        if all && cleaned.clean_end > self.first_dirty_offset() {
            write_u64(&self.dir, CLEANER_CHECKPOINT_FILE, cleaned.clean_end.0)?;
        }
        tracing::debug!(dir = %self.dir.display(), segments = cleaned.segments.len(), freed, "installed cleaned segments");
        Ok(freed)
    }
}

fn cleaned_path(dir: &Path, base: Offset, ext: &str) -> std::path::PathBuf {
    dir.join(format!("{}.{CLEANED_SUFFIX}", segment_file_name(base, ext)))
}

fn swap_path(dir: &Path, base: Offset) -> std::path::PathBuf {
    dir.join(format!("{}.{SWAP_SUFFIX}", segment_file_name(base, "log")))
}

fn discard_cleaned(dir: &Path, base: Offset) {
    for ext in ["log", "index", "timeindex"] {
        let _ = std::fs::remove_file(cleaned_path(dir, base, ext));
    }
}

/// Steps 2-4 of the swap (the module doc), stopping after `stop`. `others`: the segments merged
/// into the one at `base`.
fn swap_in(
    dir: &Path,
    base: Offset,
    others: &[Offset],
    stop: SwapStep,
) -> Result<(), StorageError> {
    let swap = swap_path(dir, base);
    std::fs::rename(cleaned_path(dir, base, "log"), &swap).at(&swap)?;
    sync_dir(dir)?;
    if stop == SwapStep::Committed {
        return Ok(());
    }
    finish_swap(dir, base, others, stop == SwapStep::IndexesSwapped)
}

/// Steps 3-4 for a committed swap: the indexes still `.cleaned`, then (unless `indexes_only`)
/// the merged segments' files are deleted and the log renamed.
fn finish_swap(
    dir: &Path,
    base: Offset,
    others: &[Offset],
    indexes_only: bool,
) -> Result<(), StorageError> {
    for ext in ["index", "timeindex"] {
        let from = cleaned_path(dir, base, ext);
        if from.exists() {
            let to = dir.join(segment_file_name(base, ext));
            std::fs::rename(&from, &to).at(&to)?;
        }
    }
    if indexes_only {
        return Ok(());
    }
    for other in others {
        for ext in ["log", "index", "timeindex"] {
            let p = dir.join(segment_file_name(*other, ext));
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(p, e)),
            }
        }
    }
    let to = dir.join(segment_file_name(base, "log"));
    std::fs::rename(swap_path(dir, base), &to).at(&to)?;
    sync_dir(dir)
}

/// The segments a committed `.swap` at `base` replaces besides the one at `base`: those whose
/// base lies inside the swap's offset range (read from its batches' headers).
fn merged_into(dir: &Path, base: Offset) -> Result<Vec<Offset>, StorageError> {
    let path = swap_path(dir, base);
    let data = std::fs::read(&path).at(&path)?;
    let mut end = base;
    for b in silt_core::batch::BatchIter::new(bytes::Bytes::from(data)) {
        let Ok(b) = b else { break };
        if let Some(h) = silt_core::batch::BatchHeader::parse(&b) {
            end = h.next_offset();
        }
    }
    let mut others = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let name = e.at(dir)?.file_name();
        if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log"))
            && let Ok(b) = stem.parse::<u64>()
            && b > base.0
            && b < end.0
        {
            others.push(Offset(b));
        }
    }
    Ok(others)
}

/// At open: finishes every committed swap and deletes uncommitted cleaned files.
pub(crate) fn finish_swaps(dir: &Path) -> Result<(), StorageError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    let names: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
    let log_swap = format!(".log.{SWAP_SUFFIX}");
    let mut changed = false;
    for name in &names {
        if let Some(stem) = name.strip_suffix(&log_swap)
            && let Ok(base) = stem.parse::<u64>()
        {
            tracing::warn!(dir = %dir.display(), base, "finishing a cleaned segment's swap that a crash interrupted");
            let others = merged_into(dir, Offset(base))?;
            finish_swap(dir, Offset(base), &others, false)?;
            changed = true;
        }
    }
    let cleaned = format!(".{CLEANED_SUFFIX}");
    for name in &names {
        if name.ends_with(&cleaned) && dir.join(name).exists() {
            let _ = std::fs::remove_file(dir.join(name));
            changed = true;
        }
    }
    if changed {
        sync_dir(dir)?;
    }
    Ok(())
}
