//! Code generated from proto/ and conversions to silt-core types (filled by the single-broker issue).
