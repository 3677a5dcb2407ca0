//! The benchmarks' one random number generator: xorshift64*, deterministic and
//! dependency-free, so a seed always gives the same workload and two runs (or two
//! versions) measure the same data.

pub struct Rng(u64);

impl Rng {
    /// A stream from `seed`. Zero, which xorshift never leaves, is taken as 1.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, n)`; 0 (without drawing) when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// Log-uniform in `[lo, hi]`.
    pub fn log_range(&mut self, lo: f64, hi: f64) -> u64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp() as u64
    }

    /// Fills `out` with random bytes, eight per draw (little-endian).
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}
