//! Yuma-style consensus over validators' weights (a simplified form of Bittensor's Yuma
//! consensus): a deterministic function of the submitted weights and stakes. The one consensus
//! of the system: the chain ledger computes its consensus weights with it, and the simulators
//! use it to simulate what the chain computes.
//!
//! For every uid `u`:
//! 1. each validator's weights are normalised to sum 1 (`W[v][u]`);
//! 2. the consensus `C[u]` is the stake-weighted `kappa`-quantile of `W[·][u]` (kappa 0.5: the
//!    stake-weighted median): the largest value that validators holding at least `kappa` of the
//!    stake gave `u` at least;
//! 3. every weight is clipped to the consensus, `W'[v][u] = min(W[v][u], C[u])`, so a minority
//!    cannot lift a uid above what the majority gave it;
//! 4. rank `R[u] = Σ_v stake[v]·W'[v][u]`, normalised to sum 1: the consensus weights, which are
//!    the rewards and rank the next aggregation set.

use std::collections::BTreeMap;

/// Consensus of one window. Vectors are indexed by position in `uids`.
#[derive(Debug, Clone, PartialEq)]
pub struct Consensus {
    pub uids: Vec<u32>,
    /// Stake-weighted kappa-quantile per uid.
    pub consensus: Vec<f64>,
    /// Normalised clipped ranks (sum 1, or all 0 when nobody has weight).
    pub weights: Vec<f64>,
}

/// `validators`: (stake, weights as (uid, raw weight)); `uids`: the registered uids.
/// Weights on uids not in `uids` are ignored.
pub fn yuma_consensus(
    uids: &[u32],
    validators: &[(u64, Vec<(u32, u16)>)],
    kappa: f64,
) -> Consensus {
    let index: BTreeMap<u32, usize> = uids.iter().enumerate().map(|(i, &u)| (u, i)).collect();
    let n = uids.len();
    // Normalised weight rows, restricted to registered uids.
    let rows: Vec<(f64, Vec<f64>)> = validators
        .iter()
        .filter(|(stake, _)| *stake > 0)
        .map(|(stake, ws)| {
            let mut row = vec![0.0f64; n];
            for &(u, w) in ws {
                if let Some(&i) = index.get(&u) {
                    row[i] += w as f64;
                }
            }
            let sum: f64 = row.iter().sum();
            if sum > 0.0 {
                row.iter_mut().for_each(|x| *x /= sum);
            }
            (*stake as f64, row)
        })
        .collect();
    let total_stake: f64 = rows.iter().map(|(s, _)| s).sum();
    let mut consensus = vec![0.0f64; n];
    let mut rank = vec![0.0f64; n];
    if total_stake > 0.0 {
        for (i, c) in consensus.iter_mut().enumerate() {
            let mut col: Vec<(f64, f64)> = rows.iter().map(|(s, r)| (r[i], *s)).collect();
            col.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut acc = 0.0;
            for (w, s) in col {
                acc += s;
                if acc >= kappa * total_stake - 1e-12 {
                    *c = w;
                    break;
                }
            }
        }
        for (s, r) in &rows {
            for i in 0..n {
                rank[i] += s * r[i].min(consensus[i]);
            }
        }
        let sum: f64 = rank.iter().sum();
        if sum > 0.0 {
            rank.iter_mut().for_each(|x| *x /= sum);
        }
    }
    Consensus {
        uids: uids.to_vec(),
        consensus,
        weights: rank,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dishonest_minority_cannot_lift_its_uid() {
        let uids = [0, 1, 2, 3];
        // Two honest validators (75% of stake) rate uids 0 and 1; a dishonest one (25%)
        // puts everything on uid 3 (its own miner).
        let honest_a = (40, vec![(0, 600), (1, 400)]);
        let honest_b = (35, vec![(0, 500), (1, 500)]);
        let liar = (25, vec![(3, 65535)]);
        let c = yuma_consensus(&uids, &[honest_a.clone(), honest_b.clone(), liar], 0.5);
        assert_eq!(
            c.weights[3], 0.0,
            "minority-only uid must get nothing: {c:?}"
        );
        assert_eq!(c.weights[2], 0.0);
        assert!((c.weights.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(c.weights[0] > c.weights[1] && c.weights[1] > 0.0);
        // The honest ordering survives; the liar's zeros only pull the median down a little.
        let clean = yuma_consensus(&uids, &[honest_a, honest_b], 0.5);
        assert!(
            (clean.weights[0] - c.weights[0]).abs() < 0.05,
            "{clean:?} vs {c:?}"
        );
        let set = crate::selection::aggregation_set(
            &uids
                .iter()
                .copied()
                .zip(c.weights.iter().copied())
                .collect(),
            &uids.iter().copied().collect(),
            3,
            0,
        );
        assert_eq!(set.primary, vec![0, 1]);
    }

    #[test]
    fn dishonest_majority_wins_and_stake_weighted_median() {
        // With kappa 0.5 the median of three equal-stake validators decides.
        let uids = [0, 1];
        let vs = [(1, vec![(0, 1)]), (1, vec![(0, 1)]), (1, vec![(1, 1)])];
        let c = yuma_consensus(&uids, &vs, 0.5);
        assert_eq!(c.consensus, vec![1.0, 0.0]);
        assert_eq!(c.weights, vec![1.0, 0.0]);
        // If the third holds most of the stake, it decides.
        let vs = [(1, vec![(0, 1)]), (1, vec![(0, 1)]), (5, vec![(1, 1)])];
        let c = yuma_consensus(&uids, &vs, 0.5);
        assert_eq!(c.weights, vec![0.0, 1.0]);
    }

    #[test]
    fn empty_and_unknown_uids() {
        let c = yuma_consensus(&[], &[(1, vec![(5, 1)])], 0.5);
        assert!(c.weights.is_empty());
        let c = yuma_consensus(&[1], &[(1, vec![(5, 1)])], 0.5);
        assert_eq!(c.weights, vec![0.0]);
    }
}
