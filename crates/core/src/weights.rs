//! From final scores to on-chain weights (SPEC §5, "Weights").
//!
//! Peers with a positive, finite final score are ranked (highest first, ties by lower uid).
//! The top G share `top_share` with a linear profile: rank r (1-based) gets ∝
//! `ratio − (ratio − 1)(r − 1)/(G − 1)`, so rank 1 gets `ratio` (2) × rank G. The next
//! `reserves` share `reserve_share` geometrically: reserve i (0-based) gets ∝ `decay^i` (0.5^i).
//! Weight never rises with rank: as in the reference, when reserve 0 would earn more than the
//! lowest top weight, every reserve is scaled so that reserve 0 earns `decay` × that weight, and
//! then everyone paid is renormalised (the mass cut off goes to all of them in proportion; with
//! G = 20, 10 reserves and 30 or more peers the top takes 96.8% and the reserves 3.2%).
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

/// The chain's burn destination: the share a validator's weights give it is nobody's reward
/// (no neuron ever holds this uid).
pub const BURN_UID: Uid = Uid::MAX;

impl Weights {
    /// The weights as a validator submits them to the chain: integers in 1..=65535, the
    /// largest weight 65535 and the others proportional (rounded), zero and non-finite weights
    /// left out; the burn share goes to [`BURN_UID`]. The chain normalises them again, so only
    /// the proportions matter. Nobody paid: nothing at all (not even a burn).
    pub fn quantize(&self) -> Vec<(Uid, u16)> {
        let paid = self
            .per_uid
            .iter()
            .filter(|(_, &x)| x.is_finite() && x > 0.0);
        let burn = (self.burn.is_finite() && self.burn > 0.0).then_some((&BURN_UID, &self.burn));
        let all: Vec<(&Uid, &f64)> = paid.chain(burn).collect();
        let max = all.iter().map(|(_, &x)| x).fold(0.0f64, f64::max);
        if max <= 0.0 || all.iter().all(|(&u, _)| u == BURN_UID) {
            return Vec::new();
        }
        let top = f64::from(CHAIN_WEIGHT_MAX);
        all.into_iter()
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
    let n_res = ranked.len().min(n_top + reserves) - n_top;
    let mut shares = top_shares(g, n_top, n_res, p);
    shares.extend(reserve_shares(n_res, p));
    cap_reserves(&mut shares, n_top, p.reserve_decay);
    let sum: f64 = shares.iter().sum();
    if !(sum.is_finite() && sum > 0.0) {
        return Weights::default();
    }
    let pay = 1.0 - p.burn;
    let per_uid = ranked
        .iter()
        .zip(&shares)
        .map(|((u, _), x)| (*u, pay * x / sum))
        .collect();
    Weights {
        per_uid,
        burn: p.burn,
    }
}

/// The top `n_top` ranks' shares: `top_share` (all of it when there is no reserve) split by the
/// linear profile of an aggregation size `g`.
fn top_shares(g: usize, n_top: usize, n_res: usize, p: &WeightParams) -> Vec<f64> {
    let share = if n_res == 0 { 1.0 } else { p.top_share };
    let profile = |r: usize| -> f64 {
        if g <= 1 {
            1.0
        } else {
            p.top_ratio - (p.top_ratio - 1.0) * r as f64 / (g - 1) as f64
        }
    };
    let sum: f64 = (0..n_top).map(profile).sum();
    (0..n_top).map(|r| share * profile(r) / sum).collect()
}

/// The reserves' shares: `reserve_share` split geometrically, reserve i ∝ `decay^i`.
fn reserve_shares(n_res: usize, p: &WeightParams) -> Vec<f64> {
    let decay = |i: usize| p.reserve_decay.powi(i32::try_from(i).unwrap_or(i32::MAX));
    let sum: f64 = (0..n_res).map(decay).sum();
    (0..n_res)
        .map(|i| p.reserve_share * decay(i) / sum)
        .collect()
}

/// Caps the reserves below the lowest top share, as the reference does: if the first reserve
/// would earn more than the last top rank, every reserve is scaled by
/// `decay · lowest top / first reserve`, so reserve 0 earns `decay` × the lowest top weight. The
/// mass cut off is not kept aside: [`compute_weights`] renormalises everyone paid.
fn cap_reserves(shares: &mut [f64], n_top: usize, decay: f64) {
    let (top, res) = shares.split_at_mut(n_top);
    let min_top = top.iter().copied().fold(f64::INFINITY, f64::min);
    let max_res = res.iter().copied().fold(0.0, f64::max);
    if max_res > min_top {
        let factor = min_top / max_res * decay;
        res.iter_mut().for_each(|x| *x *= factor);
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

    #[test]
    fn the_burn_share_is_submitted_to_the_burn_uid() {
        let w = Weights {
            per_uid: [(1, 0.25), (2, 0.125)].into(),
            burn: 0.625,
        };
        assert_eq!(
            w.quantize(),
            vec![(1, 26214), (2, 13107), (BURN_UID, 65535)]
        );
        let nobody = Weights {
            per_uid: BTreeMap::new(),
            burn: 1.0,
        };
        assert!(nobody.quantize().is_empty());
    }

    fn scores(v: &[(Uid, f64)]) -> BTreeMap<Uid, f64> {
        v.iter().copied().collect()
    }

    fn total(w: &Weights) -> f64 {
        w.per_uid.values().sum::<f64>() + w.burn
    }

    #[test]
    fn full_network_caps_reserves_below_the_top_and_keeps_profiles() {
        let p = WeightParams::default();
        let s: BTreeMap<Uid, f64> = (0..40u32).map(|u| (u, 100.0 - u as f64)).collect();
        let w = compute_weights(&s, 20, 10, &p);
        assert!((total(&w) - 1.0).abs() < 1e-12);
        // Uncapped, reserve 0 would get 0.25 / (2 − 2⁻⁹) ≈ 0.125 against rank G's 0.75 / 30 =
        // 0.025; capped, the reserves sum to 0.025 · 0.5 · (2 − 2⁻⁹), then all is renormalised.
        let res_raw = 0.025 * 0.5 * (2.0 - 2f64.powi(-9));
        let top: f64 = (0..20).map(|u| w.get(u)).sum();
        let res: f64 = (20..30).map(|u| w.get(u)).sum();
        assert!((top - 0.75 / (0.75 + res_raw)).abs() < 1e-12, "top {top}");
        assert!(
            (res - res_raw / (0.75 + res_raw)).abs() < 1e-12,
            "reserves {res}"
        );
        assert!(
            (w.get(0) / w.get(19) - 2.0).abs() < 1e-12,
            "rank 1 = 2 × rank G"
        );
        assert!(
            (w.get(20) / w.get(19) - 0.5).abs() < 1e-12,
            "reserve 0 = decay × rank G"
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
    fn reserves_below_the_lowest_top_weight_are_not_scaled() {
        // G = 1: the one top peer has 0.75, reserve 0 only 0.25 · 2/3, so nothing is capped.
        let p = WeightParams::default();
        let w = compute_weights(&scores(&[(1, 3.0), (2, 2.0), (3, 1.0)]), 1, 10, &p);
        assert!((w.get(1) - 0.75).abs() < 1e-12);
        assert!((w.get(2) - 0.25 * 2.0 / 3.0).abs() < 1e-12);
        assert!((w.get(3) - 0.25 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn degenerate_split_pays_nobody_instead_of_dividing_by_zero() {
        // top_share 0: the top earns 0, so the cap takes the reserves to 0 too.
        let p = WeightParams {
            top_share: 0.0,
            reserve_share: 1.0,
            ..Default::default()
        };
        let w = compute_weights(&scores(&[(1, 3.0), (2, 2.0)]), 1, 10, &p);
        assert!(w.is_empty() && w.burn == 0.0, "{w:?}");
    }

    /// Every peer count 0..200, G 1..=40, 0..=12 reserves, with and without burn: weight never
    /// rises with rank, everything sums to 1, and nobody outside top + reserves is paid.
    #[test]
    fn weight_is_non_increasing_in_rank_for_any_peer_count() {
        for burn in [0.0, 0.5] {
            let p = WeightParams {
                burn,
                ..Default::default()
            };
            for n in 0..200u32 {
                // Distinct scores, listed out of order so ranking is exercised too.
                let s: BTreeMap<Uid, f64> = (0..n)
                    .map(|u| (u, 1.0 + f64::from((u * 7919) % 1009)))
                    .collect();
                let ranked = rank_by_score(&s);
                for g in 1..=40usize {
                    for reserves in 0..=12usize {
                        let w = compute_weights(&s, g, reserves, &p);
                        let by_rank: Vec<f64> = ranked.iter().map(|(u, _)| w.get(*u)).collect();
                        for r in 1..by_rank.len() {
                            assert!(
                                by_rank[r] <= by_rank[r - 1],
                                "n {n} G {g} reserves {reserves} burn {burn}: rank {} gets {} \
                                 but rank {} gets {}",
                                r + 1,
                                by_rank[r],
                                r,
                                by_rank[r - 1]
                            );
                        }
                        let paid = by_rank.iter().filter(|x| **x > 0.0).count();
                        assert_eq!(paid, ranked.len().min(g + reserves));
                        if n > 0 {
                            assert!((total(&w) - 1.0).abs() < 1e-12, "sum {}", total(&w));
                        }
                    }
                }
            }
        }
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
