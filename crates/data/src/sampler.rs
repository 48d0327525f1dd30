//! The deterministic, platform-independent data sampler (specified in docs/DATA.md, "Sampler").
//!
//! Every function here is a pure function of its integer arguments: a validator recomputes exactly
//! the sample ids a peer was assigned. The algorithm uses no floating point, no hash maps whose
//! iteration order matters, and no `rand` distribution code: only the raw ChaCha20 keystream
//! (RFC 8439 block function, 20 rounds, 256-bit key, nonce 0, block counter from 0, as
//! `rand_chacha::ChaCha20Rng::from_seed` produces it) read as little-endian 32-bit words.
//!
//! 1. seed = BLAKE3(domain ‖ fields as little-endian integers), 32 bytes, used as the ChaCha20 key.
//! 2. `next_u64` = w0 | w1 << 32 for the next two keystream words w0, w1.
//! 3. `bounded(s)` (0 ≤ result < s) is Lemire's multiply-shift with rejection on 64-bit words:
//!    m = x·s (128-bit); if low64(m) < s, let t = (2^64 − s) mod s and draw new x while
//!    low64(x·s) < t; return high64(m).
//! 4. Selection is a partial Fisher–Yates shuffle of the virtual array a = [0, 1, …, n−1]:
//!    for i in 0..k { j = i + bounded(n − i); swap(a[i], a[j]); output a[i] }.
//!    The output order is the selection order.

use std::collections::HashMap;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Domain strings that separate the uses of the sampler (part of the seed, see module docs).
pub const POOL_DOMAIN: &str = "covenant/data/pool/v1";
/// Domain of [`random_pool`].
pub const RANDOM_POOL_DOMAIN: &str = "covenant/data/random-pool/v1";
/// Domain of [`batch_order`].
pub const BATCH_ORDER_DOMAIN: &str = "covenant/data/batch-order/v1";

/// A stream of uniform integers derived from a 32-byte seed, exactly as specified above.
pub struct SampleStream {
    rng: ChaCha20Rng,
}

impl SampleStream {
    /// The stream keyed by `seed` (used directly as the ChaCha20 key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        SampleStream {
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// The stream for `domain` and little-endian encoded `fields`: key = BLAKE3(domain ‖ fields).
    pub fn for_domain(domain: &str, fields: &[u8]) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(domain.as_bytes());
        h.update(fields);
        Self::from_seed(*h.finalize().as_bytes())
    }

    /// The next keystream word (little-endian 32-bit).
    pub fn next_u32(&mut self) -> u32 {
        self.rng.next_u32()
    }

    /// Two consecutive words, the first one in the low half.
    pub fn next_u64(&mut self) -> u64 {
        let lo = u64::from(self.rng.next_u32());
        let hi = u64::from(self.rng.next_u32());
        lo | (hi << 32)
    }

    /// A uniform integer in `0..s` by Lemire's method (`s` must be > 0; `bounded(0)` returns 0).
    pub fn bounded(&mut self, s: u64) -> u64 {
        if s == 0 {
            return 0;
        }
        let mut m = u128::from(self.next_u64()) * u128::from(s);
        if (m as u64) < s {
            let t = s.wrapping_neg() % s;
            while (m as u64) < t {
                m = u128::from(self.next_u64()) * u128::from(s);
            }
        }
        (m >> 64) as u64
    }

    /// `min(k, n)` distinct values of `0..n` by the partial Fisher–Yates shuffle of the spec.
    pub fn choose(&mut self, n: u64, k: u64) -> Vec<u64> {
        let k = k.min(n);
        // A dense array when it is small relative to the output, else a sparse map of the swapped
        // positions; both perform the very same swaps, so the output is identical.
        let dense = n <= k.saturating_mul(4) && n <= (1 << 28);
        let mut out = Vec::with_capacity(usize::try_from(k).unwrap_or(0).min(1 << 24));
        if dense {
            let mut a: Vec<u64> = (0..n).collect();
            for i in 0..k {
                let j = i + self.bounded(n - i);
                a.swap(i as usize, j as usize);
                out.push(a[i as usize]);
            }
        } else {
            let mut moved: HashMap<u64, u64> = HashMap::new();
            for i in 0..k {
                let j = i + self.bounded(n - i);
                let ai = moved.get(&i).copied().unwrap_or(i);
                let aj = moved.get(&j).copied().unwrap_or(j);
                moved.insert(j, ai);
                moved.insert(i, aj);
                out.push(aj);
            }
        }
        out
    }
}

/// The pool of sample ids assigned to peer `uid` in `window` of the run seeded by `run_seed`:
/// `min(pool_size, num_samples)` distinct ids in `0..num_samples`, in training order.
///
/// Seed: BLAKE3(`"covenant/data/pool/v1"` ‖ run_seed u64 LE ‖ uid u32 LE ‖ window u64 LE).
pub fn pool(run_seed: u64, uid: u32, window: u64, pool_size: usize, num_samples: u64) -> Vec<u64> {
    let mut f = Vec::with_capacity(20);
    f.extend_from_slice(&run_seed.to_le_bytes());
    f.extend_from_slice(&uid.to_le_bytes());
    f.extend_from_slice(&window.to_le_bytes());
    SampleStream::for_domain(POOL_DOMAIN, &f).choose(num_samples, pool_size as u64)
}

/// A pool that no peer is assigned by construction of its seed, for validators' "random data"
/// losses: `min(pool_size, num_samples)` distinct ids.
///
/// Seed: BLAKE3(`"covenant/data/random-pool/v1"` ‖ run_seed u64 LE ‖ window u64 LE ‖ salt u64 LE).
pub fn random_pool(
    run_seed: u64,
    window: u64,
    salt: u64,
    pool_size: usize,
    num_samples: u64,
) -> Vec<u64> {
    let mut f = Vec::with_capacity(24);
    f.extend_from_slice(&run_seed.to_le_bytes());
    f.extend_from_slice(&window.to_le_bytes());
    f.extend_from_slice(&salt.to_le_bytes());
    SampleStream::for_domain(RANDOM_POOL_DOMAIN, &f).choose(num_samples, pool_size as u64)
}

/// A permutation of `0..num_samples` for epoch `epoch` of a single-process run.
///
/// Seed: BLAKE3(`"covenant/data/batch-order/v1"` ‖ seed u64 LE ‖ epoch u64 LE).
pub fn batch_order(seed: u64, epoch: u64, num_samples: u64) -> Vec<u64> {
    let mut f = Vec::with_capacity(16);
    f.extend_from_slice(&seed.to_le_bytes());
    f.extend_from_slice(&epoch.to_le_bytes());
    SampleStream::for_domain(BATCH_ORDER_DOMAIN, &f).choose(num_samples, num_samples)
}

/// The same as [`batch_order`] (the name the single-process trainer uses).
pub fn epoch_order(seed: u64, epoch: u64, num_samples: u64) -> Vec<u64> {
    batch_order(seed, epoch, num_samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keystream_is_rfc8439_chacha20() {
        // RFC 8439 §2.3.2 style: all-zero key, nonce 0, counter 0. First keystream bytes
        // 76 b8 e0 ad a0 f1 3d 90 (the RFC 7539 A.1 test vector #1).
        let mut s = SampleStream::from_seed([0; 32]);
        assert_eq!(s.next_u32(), 0xade0_b876);
        assert_eq!(s.next_u32(), 0x903d_f1a0);
        let mut s = SampleStream::from_seed([0; 32]);
        assert_eq!(s.next_u64(), 0x903d_f1a0_ade0_b876);
    }

    #[test]
    fn bounded_is_in_range_and_roughly_uniform() {
        let mut s = SampleStream::from_seed([7; 32]);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            let v = s.bounded(6);
            assert!(v < 6);
            counts[v as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
        assert_eq!(s.bounded(1), 0);
        assert_eq!(s.bounded(0), 0);
        let x = s.bounded(u64::MAX);
        assert!(x < u64::MAX);
    }

    #[test]
    fn dense_and_sparse_paths_agree() {
        for (n, k) in [(10u64, 3u64), (100, 100), (1000, 999), (37, 20)] {
            let mut a = SampleStream::from_seed([3; 32]);
            let mut b = SampleStream::from_seed([3; 32]);
            // force each path
            let dense = {
                let k = k.min(n);
                let mut arr: Vec<u64> = (0..n).collect();
                let mut out = vec![];
                for i in 0..k {
                    let j = i + a.bounded(n - i);
                    arr.swap(i as usize, j as usize);
                    out.push(arr[i as usize]);
                }
                out
            };
            let sparse = {
                let mut moved: HashMap<u64, u64> = HashMap::new();
                let mut out = vec![];
                for i in 0..k.min(n) {
                    let j = i + b.bounded(n - i);
                    let ai = moved.get(&i).copied().unwrap_or(i);
                    let aj = moved.get(&j).copied().unwrap_or(j);
                    moved.insert(j, ai);
                    moved.insert(i, aj);
                    out.push(aj);
                }
                out
            };
            assert_eq!(dense, sparse);
            assert_eq!(SampleStream::from_seed([3; 32]).choose(n, k), dense);
        }
    }

    #[test]
    fn pool_is_distinct_in_range_and_deterministic() {
        let p = pool(42, 7, 1000, 500, 10_000);
        assert_eq!(p.len(), 500);
        let mut q = p.clone();
        q.sort_unstable();
        q.dedup();
        assert_eq!(q.len(), 500);
        assert!(p.iter().all(|&x| x < 10_000));
        assert_eq!(p, pool(42, 7, 1000, 500, 10_000));
        assert_ne!(p, pool(42, 8, 1000, 500, 10_000));
        assert_ne!(p, pool(42, 7, 1001, 500, 10_000));
        assert_ne!(p, pool(43, 7, 1000, 500, 10_000));
        // more than available: every sample exactly once
        let all = pool(1, 2, 3, 100, 17);
        let mut s = all.clone();
        s.sort_unstable();
        assert_eq!(s, (0..17).collect::<Vec<_>>());
        assert!(pool(1, 2, 3, 10, 0).is_empty());
        assert!(pool(1, 2, 3, 0, 10).is_empty());
    }

    #[test]
    fn batch_order_is_a_permutation() {
        let o = batch_order(5, 0, 1000);
        let mut s = o.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
        assert_ne!(o, batch_order(5, 1, 1000));
        assert_ne!(o[..10], (0..10).collect::<Vec<_>>()[..]);
    }

    /// Pinned outputs: if one of these changes, every validator would disagree with every miner
    /// about what was assigned. Never update them without bumping the domain version.
    #[test]
    fn pinned_outputs() {
        assert_eq!(pool(0, 0, 0, 8, 1_000_000), PINNED_POOL_0);
        assert_eq!(pool(0xDEAD_BEEF, 17, 123_456, 6, 50), PINNED_POOL_1);
        assert_eq!(random_pool(1, 2, 3, 5, 1 << 40), PINNED_RANDOM_POOL);
        assert_eq!(batch_order(9, 4, 10), PINNED_BATCH_ORDER);
        assert_eq!(epoch_order(9, 4, 10), PINNED_BATCH_ORDER);
    }

    const PINNED_POOL_0: [u64; 8] = [
        843201, 654765, 727534, 70241, 842664, 432917, 886576, 103898,
    ];
    const PINNED_POOL_1: [u64; 6] = [14, 29, 18, 26, 9, 20];
    const PINNED_RANDOM_POOL: [u64; 5] = [
        131522677393,
        648674200899,
        48927906436,
        820730286051,
        562861534799,
    ];
    const PINNED_BATCH_ORDER: [u64; 10] = [5, 2, 0, 6, 7, 9, 8, 1, 4, 3];
}
