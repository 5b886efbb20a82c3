//! Small durable files: replaced whole via a temporary file, fsync and rename.

use std::io::Write;
use std::path::Path;

/// Writes `dir/name` atomically; with `durable`, fsyncs the data and the directory too.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    data: &[u8],
    durable: bool,
) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    if durable {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Reads `dir/name` if it exists.
pub(crate) fn read_optional(
    dir: &Path,
    name: &str,
    max_bytes: u64,
) -> std::io::Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    match std::fs::metadata(&path) {
        Ok(m) if m.len() > max_bytes => Err(std::io::Error::other(format!(
            "{} is {} bytes, more than {max_bytes}",
            path.display(),
            m.len()
        ))),
        Ok(_) => std::fs::read(&path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}
