//! A small, fast, seedable random number generator (SplitMix64) and seed mixing. We keep our own so that
//! augmentation and the phantom generator are bit-for-bit reproducible across platforms and crate
//! versions: the stream for a sample depends only on (seed, epoch, sample index), never on which thread
//! decodes the sample.

/// SplitMix64 (Steele, Lea, Flood 2014): passes BigCrush, one `u64` of state.
#[derive(Clone, Debug)]
pub struct Rng(u64);

/// One SplitMix64 finalisation step: a good 64-bit mixing function.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of one sample: a hash of (run seed, epoch, sample index) that does not depend on thread
/// scheduling or batch composition.
pub fn sample_seed(seed: u64, epoch: u64, index: u64) -> u64 {
    mix64(
        mix64(mix64(seed ^ 0x5851_f42d_4c95_7f2d) ^ epoch.wrapping_add(0x1405_7b7e_f767_814f))
            ^ index,
    )
}

impl Rng {
    /// A generator whose stream depends only on `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(mix64(seed))
    }

    /// The next 64 random bits (SplitMix64).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.f32()
    }

    /// Uniform integer in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            ((self.next_u64() as u128 * n as u128) >> 64) as usize
        }
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.f64().max(1e-300);
        let u2 = self.f64();
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_in_range() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.f32();
            assert_eq!(x, b.f32());
            assert!((0.0..1.0).contains(&x));
            assert!(a.below(5) < 5);
            b.below(5);
        }
        assert_ne!(sample_seed(1, 0, 0), sample_seed(1, 0, 1));
        assert_ne!(sample_seed(1, 0, 0), sample_seed(1, 1, 0));
        assert_ne!(sample_seed(1, 0, 0), sample_seed(2, 0, 0));
    }
}
