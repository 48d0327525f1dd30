//! From final scores to on-chain weights (SPEC §5, "Weights").
//!
//! Peers with a positive, finite final score are ranked (highest first, ties by lower uid).
//! The top G share `top_share` with a linear profile: rank r (1-based) gets ∝
//! `ratio − (ratio − 1)(r − 1)/(G − 1)`, so rank 1 gets `ratio` (2) × rank G. The next
//! `reserves` share `reserve_share` geometrically: reserve i (0-based) gets ∝ `decay^i` (0.5^i).
//! When no reserve exists the top takes their share; everything is scaled by `1 − burn` and the
//! rest goes to the burn uid. Nobody with a positive score: no weights at all.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::params::WeightParams;
use crate::Uid;

/// Normalised weights: `per_uid` values plus `burn` sum to 1 (or everything is 0 when nobody
/// earned anything).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub per_uid: BTreeMap<Uid, f64>,
    pub burn: f64,
}

impl Weights {
    pub fn get(&self, uid: Uid) -> f64 {
        self.per_uid.get(&uid).copied().unwrap_or(0.0)
    }

    pub fn is_empty(&self) -> bool {
        self.per_uid.is_empty()
    }
}

/// Largest raw weight the chain takes for one uid.
pub const CHAIN_WEIGHT_MAX: u16 = u16::MAX;

impl Weights {
    /// The weights as a validator submits them to the chain: integers in 1..=65535, the
    /// largest weight 65535 and the others proportional (rounded), zero and non-finite weights
    /// left out. The chain normalises them again, so only the proportions matter.
    pub fn quantize(&self) -> Vec<(Uid, u16)> {
        let max = self
            .per_uid
            .values()
            .copied()
            .filter(|x| x.is_finite())
            .fold(0.0f64, f64::max);
        if max <= 0.0 {
            return Vec::new();
        }
        let top = f64::from(CHAIN_WEIGHT_MAX);
        self.per_uid
            .iter()
            .filter(|(_, &x)| x.is_finite() && x > 0.0)
            .map(|(&u, &x)| (u, ((x / max) * top).round().clamp(1.0, top) as u16))
            .collect()
    }
}

/// Ranks uids by score (descending, ties by uid), keeping positive finite scores only.
pub fn rank_by_score(scores: &BTreeMap<Uid, f64>) -> Vec<(Uid, f64)> {
    let mut r: Vec<(Uid, f64)> = scores
        .iter()
        .filter(|(_, s)| s.is_finite() && **s > 0.0)
        .map(|(&u, &s)| (u, s))
        .collect();
    r.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    r
}

/// Computes weights from final scores for an aggregation size `g` and `reserves` reserves.
pub fn compute_weights(
    scores: &BTreeMap<Uid, f64>,
    g: usize,
    reserves: usize,
    p: &WeightParams,
) -> Weights {
    let ranked = rank_by_score(scores);
    let n_top = ranked.len().min(g);
    if n_top == 0 {
        return Weights::default();
    }
    let res = &ranked[n_top..ranked.len().min(n_top + reserves)];
    let (top_share, res_share) = if res.is_empty() {
        (1.0, 0.0)
    } else {
        (p.top_share, p.reserve_share)
    };
    let pay = 1.0 - p.burn;

    let profile = |r: usize| -> f64 {
        if g <= 1 {
            1.0
        } else {
            p.top_ratio - (p.top_ratio - 1.0) * r as f64 / (g - 1) as f64
        }
    };
    let top_sum: f64 = (0..n_top).map(profile).sum();
    let mut per_uid = BTreeMap::new();
    for (r, (u, _)) in ranked[..n_top].iter().enumerate() {
        per_uid.insert(*u, pay * top_share * profile(r) / top_sum);
    }
    let res_sum: f64 = (0..res.len()).map(|i| p.reserve_decay.powi(i as i32)).sum();
    for (i, (u, _)) in res.iter().enumerate() {
        per_uid.insert(
            *u,
            pay * res_share * p.reserve_decay.powi(i as i32) / res_sum,
        );
    }
    Weights {
        per_uid,
        burn: p.burn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantized_weights_keep_proportions_and_drop_zeros() {
        let w = Weights {
            per_uid: [(1, 0.5), (2, 0.25), (3, 0.0), (4, f64::NAN), (5, 1e-9)].into(),
            burn: 0.0,
        };
        assert_eq!(w.quantize(), vec![(1, 65535), (2, 32768), (5, 1)]);
        assert!(Weights::default().quantize().is_empty());
    }

    fn scores(v: &[(Uid, f64)]) -> BTreeMap<Uid, f64> {
        v.iter().copied().collect()
    }

    fn total(w: &Weights) -> f64 {
        w.per_uid.values().sum::<f64>() + w.burn
    }

    #[test]
    fn full_network_splits_75_25_with_profiles() {
        let p = WeightParams::default();
        let s: BTreeMap<Uid, f64> = (0..40u32).map(|u| (u, 100.0 - u as f64)).collect();
        let w = compute_weights(&s, 20, 10, &p);
        assert!((total(&w) - 1.0).abs() < 1e-12);
        let top: f64 = (0..20).map(|u| w.get(u)).sum();
        let res: f64 = (20..30).map(|u| w.get(u)).sum();
        assert!((top - 0.75).abs() < 1e-12 && (res - 0.25).abs() < 1e-12);
        assert!(
            (w.get(0) / w.get(19) - 2.0).abs() < 1e-12,
            "rank 1 = 2 × rank G"
        );
        assert!(
            (w.get(20) / w.get(21) - 2.0).abs() < 1e-12,
            "reserves halve"
        );
        assert_eq!(w.get(30), 0.0, "beyond reserves: nothing");
        // Linear: equal steps between consecutive ranks.
        let d1 = w.get(0) - w.get(1);
        let d2 = w.get(10) - w.get(11);
        assert!((d1 - d2).abs() < 1e-12);
    }

    #[test]
    fn burn_scales_everything() {
        let p = WeightParams {
            burn: 0.5,
            ..Default::default()
        };
        let s: BTreeMap<Uid, f64> = (0..40u32).map(|u| (u, 1.0 + u as f64)).collect();
        let w = compute_weights(&s, 20, 10, &p);
        assert!((total(&w) - 1.0).abs() < 1e-12);
        assert!((w.per_uid.values().sum::<f64>() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn edge_cases() {
        let p = WeightParams::default();
        assert!(
            compute_weights(&BTreeMap::new(), 20, 10, &p).is_empty(),
            "no peers"
        );
        assert!(
            compute_weights(&scores(&[(1, 0.0), (2, -3.0), (3, f64::NAN)]), 20, 10, &p).is_empty(),
            "nobody positive"
        );
        let one = compute_weights(&scores(&[(4, 0.1)]), 20, 10, &p);
        assert!((one.get(4) - 1.0).abs() < 1e-12, "one peer takes all");
        // Ties: equal scores → lower uid ranks first and gets slightly more.
        let tie = compute_weights(&scores(&[(9, 1.0), (3, 1.0)]), 20, 10, &p);
        assert!(tie.get(3) > tie.get(9));
        assert!((total(&tie) - 1.0).abs() < 1e-12);
        // G = 1: one top peer, the rest reserves.
        let g1 = compute_weights(&scores(&[(1, 3.0), (2, 2.0), (3, 1.0)]), 1, 10, &p);
        assert!((g1.get(1) - 0.75).abs() < 1e-12);
        assert!((g1.get(2) - 0.25 * 2.0 / 3.0).abs() < 1e-12);
    }
}
