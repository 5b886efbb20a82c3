//! The refusal of data written in a batch format this version does not read: Silt's own
//! magic-1 format (CRC-32 IEEE) from before Kafka parity. Not converted (there were no users to
//! migrate): a broker finding it stops at start with a message, instead of recovery taking the
//! batches for damage and cutting them away.

use std::path::{Path, PathBuf};

use silt_core::batch::{MAGIC, MAGIC_POS, MAGIC_V1_SILT};

/// The first segment under `data_dir` (one level of partition directories) whose first batch
/// has another magic than [`MAGIC`], with that magic. Reads 17 bytes per segment; unreadable
/// or short files are left to the log's own checks.
pub fn find_foreign_format(data_dir: &Path) -> Option<(PathBuf, u8)> {
    let dirs = std::fs::read_dir(data_dir).ok()?;
    for dir in dirs.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        let Ok(files) = std::fs::read_dir(&dir) else { continue };
        for file in files.flatten().map(|e| e.path()) {
            if file.extension().is_none_or(|x| x != "log") {
                continue;
            }
            let mut head = [0u8; MAGIC_POS + 1];
            let read = std::fs::File::open(&file)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
            // A preallocated or empty segment starts with zeros: no batch to judge.
            if read.is_ok() && head[MAGIC_POS] == MAGIC_V1_SILT {
                return Some((file, head[MAGIC_POS]));
            }
        }
    }
    None
}

/// The refusal message for [`find_foreign_format`]'s finding.
pub fn foreign_format_message(file: &Path, magic: u8) -> String {
    format!(
        "{} holds record batches in Silt's magic-{magic} format (CRC-32); this version stores \
         Kafka's RecordBatch v2 (magic {MAGIC}, CRC-32C) and does not convert: move the data \
         directory aside and start empty, or run the previous version to read it out \
         (docs/format.md §1)",
        file.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_magic_1_segment_is_found_and_v2_or_empty_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t-0");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("00000000000000000000.log"), vec![0u8; 4096]).unwrap();
        let mut v2 = vec![0u8; 100];
        v2[MAGIC_POS] = MAGIC;
        std::fs::write(p.join("00000000000000000100.log"), &v2).unwrap();
        std::fs::write(p.join("00000000000000000200.log"), [1u8; 3]).unwrap();
        assert_eq!(find_foreign_format(dir.path()), None);
        let mut v1 = v2.clone();
        v1[MAGIC_POS] = MAGIC_V1_SILT;
        let old = p.join("00000000000000000300.log");
        std::fs::write(&old, &v1).unwrap();
        assert_eq!(find_foreign_format(dir.path()), Some((old.clone(), 1)));
        assert!(foreign_format_message(&old, 1).contains("does not convert"));
    }
}
