//! Writing to stdout without panicking: a closed stdout (`silt consume t | head -1`) ends the
//! command quietly with exit 0 instead of the panic `println!` gives.

use std::io::{self, Write};

use crate::error::CliError;

/// Writes one line to stdout; a closed stdout becomes [`CliError::closed`].
pub fn write_line(args: std::fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_fmt(args).and_then(|()| out.write_all(b"\n")).map_err(write_error)
}

/// The CLI error for a failed write to stdout.
pub fn write_error(e: io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::closed()
    } else {
        CliError::failed(format!("writing to stdout: {e}"), "IO")
    }
}

/// `println!` that returns a [`CliError`] from the enclosing function when stdout is closed.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_line(format_args!($($arg)*))?
    };
}
