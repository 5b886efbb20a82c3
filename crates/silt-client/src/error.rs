//! Client errors.

use silt_proto::v1::ErrorCode;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with an error code.
    #[error("{message}")]
    Server { code: ErrorCode, message: String },
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("transport error: {0}")]
    Transport(#[from] tonic::Status),
    #[error("cannot reach any broker: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("corrupt data from the broker: {0}")]
    Corrupt(String),
    #[error("the producer is closed")]
    Closed,
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ClientError {
    /// The broker's error code, when the broker answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            ClientError::UnknownTopic(_) => Some(ErrorCode::UnknownTopic),
            _ => None,
        }
    }

    /// Whether the same call may succeed later without anything changing on the caller's side:
    /// transport failures, time-outs, no broker reachable, and the broker's retriable codes
    /// (`BROKER_NOT_AVAILABLE`, `NOT_LEADER`, ...). Unknown topics are not (see
    /// [`Client::partition_count`](crate::Client::partition_count) for the grace after a create).
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Transport(status) => !crate::client::is_refusal(status),
            ClientError::Connect(_) | ClientError::Timeout => true,
            ClientError::Server { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// The broker's reason, when it refused to authenticate the client (no credentials or
    /// certificate, an unknown user, a wrong password).
    pub fn authentication_failure(&self) -> Option<&str> {
        match self {
            ClientError::Transport(s) if s.code() == tonic::Code::Unauthenticated => {
                Some(s.message())
            }
            _ => None,
        }
    }

    /// An error from a per-item code and message.
    pub fn server(code: i32, message: &str) -> ClientError {
        let code = ErrorCode::try_from(code).unwrap_or(ErrorCode::UnknownServerError);
        let message =
            if message.is_empty() { code.as_str_name().to_string() } else { message.to_string() };
        ClientError::Server { code, message }
    }
}

/// Why one record was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProduceError {
    /// The broker's code, if it answered.
    pub code: Option<ErrorCode>,
    pub message: String,
    /// True when the record is certainly not in the log (a retry cannot duplicate it); false
    /// when the outcome is unknown (timeouts, transport errors after sending).
    pub definitely_not_stored: bool,
}

impl From<ProduceError> for ClientError {
    /// A record that was not (or may not have been) stored, as a client error: the broker's
    /// code, or UNKNOWN_SERVER_ERROR when none answered.
    fn from(e: ProduceError) -> ClientError {
        ClientError::Server {
            code: e.code.unwrap_or(ErrorCode::UnknownServerError),
            message: e.message,
        }
    }
}
