//! `TopicName`: a validated topic name.
//!
//! Legal names follow Kafka's rule so that habits and tooling carry over: 1 to 249 characters from
//! `[a-zA-Z0-9._-]`, and neither `.` nor `..`. A name is also a directory name component
//! (`<topic>-<partition>`), which is why the rule is strict.

use std::fmt;
use std::str::FromStr;

/// The longest legal topic name, as in Kafka.
pub const TOPIC_NAME_MAX_LEN: usize = 249;

/// A topic name that passed validation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

/// Why a topic name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("topic name is empty")]
    Empty,
    #[error("topic name is {len} characters long, the limit is {TOPIC_NAME_MAX_LEN}")]
    TooLong { len: usize },
    #[error("topic name may not be '.' or '..'")]
    Dots,
    #[error(
        "topic name contains {found:?}; only ASCII letters, digits, '.', '_' and '-' are legal"
    )]
    IllegalChar { found: char },
}

impl TopicName {
    /// Validates `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<Self, TopicNameError> {
        let name = name.into();
        validate(&name)?;
        Ok(TopicName(name))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for Silt's own topics (names starting with `__`), which clients may not create.
    pub fn is_internal(&self) -> bool {
        self.0.starts_with("__")
    }
}

fn validate(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > TOPIC_NAME_MAX_LEN {
        return Err(TopicNameError::TooLong { len: name.len() });
    }
    if name == "." || name == ".." {
        return Err(TopicNameError::Dots);
    }
    if let Some(found) =
        name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(TopicNameError::IllegalChar { found });
    }
    Ok(())
}

impl FromStr for TopicName {
    type Err = TopicNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopicName::new(s)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names() {
        for ok in ["orders", "a", "Orders.v2_eu-west", "__consumer_offsets", &"x".repeat(249)] {
            assert!(TopicName::new(ok).is_ok(), "{ok} should be legal");
        }
    }

    #[test]
    fn refuses_illegal_names_with_the_reason() {
        assert_eq!(TopicName::new(""), Err(TopicNameError::Empty));
        assert_eq!(TopicName::new(".."), Err(TopicNameError::Dots));
        assert_eq!(TopicName::new("x".repeat(250)), Err(TopicNameError::TooLong { len: 250 }));
        assert_eq!(TopicName::new("a/b"), Err(TopicNameError::IllegalChar { found: '/' }));
        assert_eq!(TopicName::new("é"), Err(TopicNameError::IllegalChar { found: 'é' }));
        assert_eq!(TopicName::new("a b"), Err(TopicNameError::IllegalChar { found: ' ' }));
    }

    #[test]
    fn internal_names_are_recognised() {
        assert!(TopicName::new("__consumer_offsets").unwrap().is_internal());
        assert!(!TopicName::new("_x").unwrap().is_internal());
    }
}
