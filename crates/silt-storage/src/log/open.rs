//! Opening a log (with crash recovery) and closing it cleanly.
//!
//! Open: a `clean-shutdown` marker means every file was synced and trimmed at close, so no scan
//! is needed. Without it, segments at or after the recovery point (the active segment when the
//! process died, and any whose roll did not finish) are scanned batch by batch and cut at the
//! first invalid byte. Earlier segments were sealed and synced at roll time and are opened as
//! they are: their index files checked (and rebuilt if damaged) and the batches after the last
//! index entry checked whole; a damaged one makes that segment scanned and cut like an unsynced
//! one. Segments after a cut (or after a gap) cannot be part of the log any more; they are moved
//! to `quarantine-<ms>/` in the partition directory, never deleted, and the log reports itself
//! damaged (the broker re-fetches from the leader; an operator can recover the files).

use std::path::Path;

use silt_core::Offset;
use silt_core::batch::{BatchHeader, HEADER_LEN};

use super::Log;
use crate::checkpoint::{
    CLEAN_SHUTDOWN_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, read_u64, remove_durably, write_u64,
};
use crate::error::IoContext;
use crate::recovery::Stop;
use crate::segment::{SEGMENT_NAME_DIGITS, Segment};
use crate::{LeaderEpochCache, LogConfig, StorageError};

/// Base offsets of the `.log` files in `dir`, sorted; removes leftover `.tmp` files.
fn list_segments(dir: &Path) -> Result<Vec<Offset>, StorageError> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
        } else if let Some(stem) = name.strip_suffix(".log")
            && stem.len() == SEGMENT_NAME_DIGITS
            && let Ok(base) = stem.parse::<u64>()
        {
            bases.push(Offset(base));
        }
    }
    bases.sort();
    Ok(bases)
}

/// Reads an optional checkpoint, logging (and ignoring) a damaged one.
fn checkpoint(dir: &Path, name: &str) -> Option<u64> {
    read_u64(dir, name).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "damaged checkpoint ignored");
        None
    })
}

impl Log {
    /// Opens the log in `dir` (creating it if needed), recovering from a crash if the last close
    /// was not clean. `now_ms` dates a newly created segment (for `segment_ms`).
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, StorageError> {
        config.validate()?;
        std::fs::create_dir_all(dir).at(dir)?;
        let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
        // The marker must be gone before anything new is written, or a crash after this open
        // would skip the scan of bytes that were never synced.
        remove_durably(dir, CLEAN_SHUTDOWN_FILE)?;
        let recovery_point = Offset(if clean {
            u64::MAX
        } else {
            checkpoint(dir, RECOVERY_POINT_FILE).unwrap_or(0)
        });
        let (loaded_epochs, epochs_ok) = match LeaderEpochCache::load(dir) {
            Ok(c) => (c, true),
            Err(e) => {
                tracing::warn!(error = %e, "leader-epoch checkpoint damaged, rebuilding it from the batches");
                (LeaderEpochCache::empty(dir), false)
            }
        };
        let mut segments: Vec<Segment> = Vec::new();
        let mut damaged = false;
        super::clean::finish_swaps(dir)?;
        let bases = list_segments(dir)?;
        for (i, &base) in bases.iter().enumerate() {
            if let Some(prev) = segments.last()
                && prev.next_offset() != base
            {
                tracing::error!(dir = %dir.display(), base = base.0, expected = prev.next_offset().0, "segment does not follow its predecessor: it and later ones are moved to quarantine");
                quarantine(dir, &bases[i..])?;
                damaged = true;
                break;
            }
            let trusted = base < recovery_point;
            let opened = if trusted {
                Segment::open_trusted(dir, base, &config).map_err(Some)
            } else {
                Err(None)
            };
            let (seg, stop) = match opened {
                Ok(seg) => (seg, None),
                Err(e) => {
                    if let Some(e) = e {
                        tracing::warn!(error = %e, "trusted segment is damaged, scanning it");
                    }
                    Segment::recover(dir, base, &config, epochs_ok.then_some(&loaded_epochs))?
                }
            };
            let cut = matches!(stop, Some(Stop::Invalid { .. }));
            if let Some(Stop::Invalid { pos, reason }) = &stop {
                tracing::warn!(segment = %seg.path().display(), position = pos, reason = %reason, "log cut at an invalid batch");
            }
            segments.push(seg);
            damaged |= cut;
            if cut {
                if i + 1 < bases.len() {
                    tracing::error!(dir = %dir.display(), segments = bases.len() - i - 1, "segments after the cut are moved to quarantine");
                }
                quarantine(dir, &bases[i + 1..])?;
                break;
            }
        }
        let mut log_start = Offset(checkpoint(dir, LOG_START_FILE).unwrap_or(0));
        if segments.is_empty() {
            segments.push(Segment::create(dir, log_start, &config, now_ms)?);
        }
        let first_base = segments[0].base();
        let end = segments.last().expect("invariant: just ensured").next_offset();
        if log_start != first_base {
            log_start = first_base;
            write_u64(dir, LOG_START_FILE, log_start.0)?;
        }
        let active = segments.last_mut().expect("invariant: just ensured");
        active.make_active(&config)?;
        let active_base = active.base();
        write_u64(dir, RECOVERY_POINT_FILE, active_base.0)?;
        let mut log = Log {
            dir: dir.to_owned(),
            config,
            segments,
            log_start,
            epochs: loaded_epochs,
            synced: end,
            damaged_on_open: damaged,
            failed_sync: None,
            layout: 0,
        };
        if !epochs_ok {
            log.rebuild_epochs()?;
        }
        let mut changed = log.epochs.truncate_from_end(end);
        changed |= log.epochs.truncate_from_start(log_start);
        if changed {
            log.epochs.save()?;
        }
        tracing::info!(dir = %dir.display(), clean, log_start = log_start.0, log_end = end.0, segments = log.segments.len(), "opened log");
        Ok(log)
    }

    /// Rebuilds the leader-epoch checkpoint from the epochs stamped on the batches.
    fn rebuild_epochs(&mut self) -> Result<(), StorageError> {
        let mut epochs = LeaderEpochCache::empty(&self.dir);
        for seg in &self.segments {
            let mut pos = 0;
            while pos < seg.size() {
                let h: BatchHeader = seg.header_at(pos, false, self.config.max_batch_bytes)?;
                if epochs.latest_epoch().is_none_or(|e| h.partition_leader_epoch > e) {
                    epochs.assign(h.partition_leader_epoch, h.base_offset)?;
                }
                pos += h.total_len().max(HEADER_LEN) as u64;
            }
        }
        epochs.save()?;
        self.epochs = epochs;
        Ok(())
    }

    /// Syncs and trims every file, then writes the clean-shutdown marker, so the next open
    /// skips the scan.
    /// An offline log (a sync failed) writes no marker: the next open recovers it.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.sync()?;
        self.active_mut().seal()?;
        write_u64(&self.dir, LOG_START_FILE, self.log_start.0)?;
        write_u64(&self.dir, CLEAN_SHUTDOWN_FILE, self.log_end_offset().0)?;
        tracing::info!(dir = %self.dir.display(), log_end = self.log_end_offset().0, "closed log cleanly");
        Ok(())
    }
}

/// The prefix of the directories segments cut off the log are moved to.
pub const QUARANTINE_PREFIX: &str = "quarantine-";

/// Moves the files of the segments at `bases` out of the log, into a new `quarantine-<ms>/`
/// directory next to them (durably): they are no longer part of the log, but not destroyed.
fn quarantine(dir: &Path, bases: &[Offset]) -> Result<(), StorageError> {
    if bases.is_empty() {
        return Ok(());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let to = dir.join(format!("{QUARANTINE_PREFIX}{stamp}"));
    std::fs::create_dir_all(&to).at(&to)?;
    for &base in bases {
        for ext in ["log", "index", "timeindex"] {
            let name = crate::segment_file_name(base, ext);
            let path = dir.join(&name);
            match std::fs::rename(&path, to.join(&name)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(path, e)),
            }
        }
    }
    tracing::error!(quarantine = %to.display(), segments = bases.len(), "moved segments out of the log");
    crate::file_util::sync_dir(&to)?;
    crate::file_util::sync_dir(dir)
}
