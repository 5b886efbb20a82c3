//! Async producer, consumer and admin client (filled by the single-broker issue).
