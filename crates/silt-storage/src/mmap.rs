//! The only `unsafe` in Silt: mapping files into memory.
//!
//! Soundness rests on two rules the rest of the crate keeps:
//! - a file is never shrunk below a range that a live map (or a `Bytes` slice of one) may read;
//!   segments are trimmed only past their last batch, and deleted files stay mapped until
//!   unmapped (unlinking does not invalidate a map);
//! - log files are written with positional writes (`pwrite`) only at or after the end of the
//!   data already handed out, never through the map, so a slice given to a reader does not change
//!   under it (truncation of a follower's uncommitted tail is the one exception, and it only
//!   affects bytes above the high watermark, which consumers never read).
//!   Index files are written through `MmapMut` and never read through another map.

#![allow(unsafe_code)]

use std::fs::File;

use bytes::Bytes;
use memmap2::{Mmap, MmapMut, MmapOptions};

/// Maps the first `len` bytes of `file` read-only and wraps the map in `Bytes`, so reads can be
/// handed out as zero-copy slices that keep the map alive. `len == 0` gives an empty `Bytes`
/// (an empty map is an error on Linux).
pub(crate) fn map_read(file: &File, len: u64) -> std::io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(len).map_err(std::io::Error::other)?;
    // SAFETY: the file is owned by this crate's segment, which follows the module rules above:
    // the mapped range is never truncated while mapped and bytes below the data end are not
    // rewritten while a reader may hold them.
    let map: Mmap = unsafe { MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Maps `file` read-write for an index. The file must already have its full (preallocated)
/// length.
pub(crate) fn map_write(file: &File) -> std::io::Result<MmapMut> {
    // SAFETY: index files are only accessed through this one map while it lives; their length is
    // fixed (preallocated) until the map is dropped and the file is trimmed.
    unsafe { MmapMut::map_mut(file) }
}

/// Maps an index file read-only (a sealed segment's index).
pub(crate) fn map_index_read(file: &File) -> std::io::Result<Option<Mmap>> {
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: a sealed index file is never written again; it is only deleted (which does not
    // invalidate the map) or, on truncation, re-opened writable after this map is dropped.
    unsafe { Mmap::map(file) }.map(Some)
}
