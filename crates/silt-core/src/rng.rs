//! A small deterministic generator (xorshift64*) for fuzz tests and benchmark payloads: the same
//! seed gives the same sequence, so a failing case or a benchmark run can be repeated. Not for
//! anything that must be unpredictable (ids use `random_u64`).

/// xorshift64* (Vigna): `XorShift(seed)`, `seed` non-zero.
#[derive(Debug, Clone)]
pub struct XorShift(pub u64);

impl XorShift {
    /// The next 64 bits.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 for `n` 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
