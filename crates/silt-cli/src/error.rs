//! `CliError`: what failed, a short code, and the exit status it maps to.

use std::process::ExitCode;

use silt_client::ClientError;
use silt_proto::v1::ErrorCode;

/// A failure to report as `error: <what> (<code>)`.
#[derive(Debug)]
pub struct CliError {
    pub what: String,
    pub code: String,
    pub exit: u8,
}

impl CliError {
    /// The operation failed (exit 1).
    pub fn failed(what: impl Into<String>, code: impl Into<String>) -> CliError {
        CliError { what: what.into(), code: code.into(), exit: 1 }
    }

    /// Bad flags or arguments (exit 2).
    pub fn usage(what: impl Into<String>) -> CliError {
        CliError { what: what.into(), code: "USAGE".into(), exit: 2 }
    }

    /// Stdout was closed by the reader (a pipe into `head`): stop quietly, exit 0.
    pub fn closed() -> CliError {
        CliError { what: String::new(), code: "STDOUT_CLOSED".into(), exit: 0 }
    }

    /// Whether this only means the reader went away.
    pub fn is_closed(&self) -> bool {
        self.exit == 0
    }

    /// Prints the error line (nothing for a closed stdout) and returns the exit code.
    pub fn report(self) -> ExitCode {
        if self.is_closed() {
            return ExitCode::SUCCESS;
        }
        eprintln!("error: {} ({})", self.what, self.code);
        ExitCode::from(self.exit)
    }
}

/// `UNKNOWN_TOPIC` for `ERROR_CODE_UNKNOWN_TOPIC`.
pub fn code_name(code: ErrorCode) -> String {
    code.as_str_name().trim_start_matches("ERROR_CODE_").to_string()
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        if let Some(why) = e.authentication_failure() {
            return CliError::failed(why, "AUTHENTICATION_FAILED");
        }
        let code = match (&e, e.code()) {
            (_, Some(code)) => code_name(code),
            (ClientError::UnknownTopic(_), None) => "UNKNOWN_TOPIC".into(),
            (ClientError::Connect(_), None) => "BROKER_NOT_AVAILABLE".into(),
            (ClientError::Timeout, None) => "REQUEST_TIMED_OUT".into(),
            (ClientError::Corrupt(_), None) => "CORRUPT_MESSAGE".into(),
            (ClientError::InvalidArgument(_), None) => "INVALID_REQUEST".into(),
            (ClientError::Transport(s), None) => format!("GRPC_{:?}", s.code()).to_uppercase(),
            _ => "ERROR".into(),
        };
        CliError::failed(e.to_string(), code)
    }
}
