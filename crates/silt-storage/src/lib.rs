//! Segmented, memory-mapped partition logs: segments, indexes, recovery, retention.
