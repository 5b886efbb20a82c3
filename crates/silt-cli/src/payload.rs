//! Record values for `silt bench produce --payload`: zeros, or varied JSON-like events whose
//! compression ratio resembles real application events (compression figures from repeated bytes
//! mean nothing).

use bytes::Bytes;

use silt_core::rng::XorShift;

use crate::args::PayloadArg;

/// Distinct values a run cycles through (a batch of ~1 MiB holds about a thousand 1 KiB records,
/// so a batch rarely holds one value twice).
const POOL: usize = 4096;

/// Picks from a list.
fn pick<'a>(rng: &mut XorShift, from: &[&'a str]) -> &'a str {
    from[rng.below(from.len())]
}

const EVENTS: [&str; 8] =
    ["page_view", "add_to_cart", "checkout", "search", "login", "logout", "click", "purchase"];
const COUNTRIES: [&str; 10] = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "NL", "SE", "ES"];
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "okhttp/4.12.0",
];
const WORDS: [&str; 16] = [
    "blue", "shoes", "lamp", "garden", "coffee", "laptop", "desk", "chair", "river", "book",
    "phone", "cable", "green", "winter", "jacket", "tea",
];

/// One JSON-like event of exactly `size` bytes (padded inside a `note` field, cut if longer).
fn event(rng: &mut XorShift, i: u64, size: usize) -> Vec<u8> {
    let mut s = format!(
        "{{\"event_id\":\"{:016x}\",\"seq\":{i},\"type\":\"{}\",\"user\":\"user-{}\",\"session\":{},\
         \"ts\":{},\"country\":\"{}\",\"path\":\"/products/{}/{}\",\"amount\":{}.{:02},\
         \"agent\":\"{}\",\"note\":\"",
        rng.next(),
        pick(rng, &EVENTS),
        rng.below(100_000),
        rng.below(1 << 40),
        1_764_000_000_000u64 + rng.below(86_400_000) as u64,
        pick(rng, &COUNTRIES),
        rng.below(50_000),
        pick(rng, &WORDS),
        rng.below(500),
        rng.below(100),
        pick(rng, &AGENTS),
    );
    while s.len() + 2 < size {
        s.push_str(pick(rng, &WORDS));
        s.push(' ');
    }
    s.push_str("\"}");
    let mut v = s.into_bytes();
    v.truncate(size);
    v
}

/// The values a bench run sends, `size` bytes each, to be used round robin.
pub fn values(kind: PayloadArg, size: usize) -> Vec<Bytes> {
    match kind {
        PayloadArg::Zeros => vec![Bytes::from(vec![0u8; size])],
        PayloadArg::Json => {
            let mut rng = XorShift(0x5117_0000_beef);
            (0..POOL as u64).map(|i| Bytes::from(event(&mut rng, i, size))).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_have_the_size_asked_and_differ() {
        let v = values(PayloadArg::Json, 1024);
        assert_eq!(v.len(), POOL);
        assert!(v.iter().all(|b| b.len() == 1024));
        assert_ne!(v[0], v[1]);
        assert!(v[0].starts_with(b"{\"event_id\":"));
        let small = values(PayloadArg::Json, 10);
        assert!(small.iter().all(|b| b.len() == 10));
        assert_eq!(values(PayloadArg::Zeros, 7), vec![Bytes::from(vec![0u8; 7])]);
    }
}
