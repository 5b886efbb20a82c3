//! Retention selection: which whole segments to delete, as a pure function over summaries.
//! The active (last) segment is never deleted; only a prefix of the log is.

/// What retention needs to know about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub size_bytes: u64,
    /// Largest record timestamp in the segment (ms); `i64::MIN` when empty.
    pub max_timestamp: i64,
}

/// How many segments from the front of `segments` (oldest first, active last) to delete: those
/// whose newest record is older than `retention_ms` at `now_ms`, and the oldest segments whose
/// removal leaves the log still at least `retention_bytes` large; whichever removes more.
pub fn segments_to_delete(
    segments: &[SegmentSummary],
    now_ms: i64,
    retention_ms: Option<i64>,
    retention_bytes: Option<u64>,
) -> usize {
    let deletable = &segments[..segments.len().saturating_sub(1)];
    let by_time = retention_ms.map_or(0, |ms| {
        deletable.iter().take_while(|s| s.max_timestamp.saturating_add(ms) < now_ms).count()
    });
    // As Kafka: delete a segment only if the log stays at or above the limit without it, so
    // the log is never cut below `retention_bytes`.
    let by_size = retention_bytes.map_or(0, |limit| {
        let mut excess = segments.iter().map(|s| s.size_bytes).sum::<u64>().saturating_sub(limit);
        deletable
            .iter()
            .take_while(|s| {
                let go =
                    s.size_bytes <= excess && s.size_bytes > 0 || s.size_bytes == 0 && excess > 0;
                if go {
                    excess -= s.size_bytes;
                }
                go
            })
            .count()
    });
    by_time.max(by_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(v: &[(u64, i64)]) -> Vec<SegmentSummary> {
        v.iter()
            .map(|&(size_bytes, max_timestamp)| SegmentSummary { size_bytes, max_timestamp })
            .collect()
    }

    #[test]
    fn time_retention_deletes_an_old_prefix_but_never_the_active_segment() {
        let s = segs(&[(10, 100), (10, 200), (10, 900), (10, 150)]);
        assert_eq!(segments_to_delete(&s, 1000, Some(500), None), 2);
        // The third segment is young, so the old fourth one waits behind it.
        let all_old = segs(&[(10, 1), (10, 2)]);
        assert_eq!(segments_to_delete(&all_old, 1000, Some(10), None), 1);
        assert_eq!(segments_to_delete(&s, 1000, None, None), 0);
    }

    #[test]
    fn size_retention_deletes_whole_segments_without_going_under_the_limit() {
        let s = segs(&[(100, 0), (100, 0), (100, 0), (50, 0)]);
        assert_eq!(segments_to_delete(&s, 0, None, Some(350)), 0);
        assert_eq!(segments_to_delete(&s, 0, None, Some(300)), 0); // 250 would be under 300
        assert_eq!(segments_to_delete(&s, 0, None, Some(250)), 1); // 350 -> 250
        assert_eq!(segments_to_delete(&s, 0, None, Some(150)), 2); // 350 -> 150
        assert_eq!(segments_to_delete(&s, 0, None, Some(0)), 3); // the active segment stays
    }
}
