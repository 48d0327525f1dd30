//! Yuma-style consensus over validators' weights (a simplified form of Bittensor's Yuma
//! consensus): a deterministic function of the submitted weights and stakes. The one consensus
//! of the system: the chain ledger computes its consensus weights with it, and the simulators
//! use it to simulate what the chain computes.
//!
//! For every uid `u`:
//! 1. each validator's weights are normalised to sum 1 (`W[v][u]`);
//! 2. the consensus `C[u]` is the stake-weighted lower `kappa`-quantile of `W[·][u]` (kappa 0.5:
//!    the lower stake-weighted median): the smallest value `c` such that validators holding at
//!    least `1 − kappa` of the stake gave `u` at most `c`. For kappa < 1 that is the largest value
//!    that validators holding *more* than `kappa` of the stake gave `u` at least, so an exact
//!    half of the stake is not a majority: with two equal validators a uid gets the lower of
//!    their two values (nothing unless both give it weight); with kappa 1, the smallest value
//!    any validator gave;
//! 3. every weight is clipped to the consensus, `W'[v][u] = min(W[v][u], C[u])`, so a minority
//!    cannot lift a uid above what the majority gave it;
//! 4. rank `R[u] = Σ_v stake[v]·W'[v][u]`, normalised to sum 1: the consensus weights, which are
//!    the rewards and rank the next aggregation set.

use std::collections::BTreeMap;

/// Consensus of one window. Vectors are indexed by position in `uids`.
#[derive(Debug, Clone, PartialEq)]
pub struct Consensus {
    pub uids: Vec<u32>,
    /// Stake-weighted lower kappa-quantile per uid.
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
    let rows: Vec<(u64, Vec<f64>)> = validators
        .iter()
        .filter(|(stake, _)| *stake > 0)
        .map(|(stake, ws)| (*stake, normalised_row(&index, n, ws)))
        .collect();
    let consensus: Vec<f64> = (0..n)
        .map(|i| lower_quantile(rows.iter().map(|(s, r)| (r[i], *s)), kappa))
        .collect();
    let mut rank = vec![0.0f64; n];
    for (s, r) in &rows {
        for i in 0..n {
            rank[i] += *s as f64 * r[i].min(consensus[i]);
        }
    }
    let sum: f64 = rank.iter().sum();
    if sum > 0.0 {
        rank.iter_mut().for_each(|x| *x /= sum);
    }
    Consensus {
        uids: uids.to_vec(),
        consensus,
        weights: rank,
    }
}

/// One validator's weights over the `n` registered uids (by position in `index`), normalised
/// to sum 1 (all 0 when it gave none of them weight).
fn normalised_row(index: &BTreeMap<u32, usize>, n: usize, ws: &[(u32, u16)]) -> Vec<f64> {
    let mut row = vec![0.0f64; n];
    for &(u, w) in ws {
        if let Some(&i) = index.get(&u) {
            row[i] += f64::from(w);
        }
    }
    let sum: f64 = row.iter().sum();
    if sum > 0.0 {
        row.iter_mut().for_each(|x| *x /= sum);
    }
    row
}

/// The stake-weighted lower `kappa`-quantile of `(value, stake)` pairs: the smallest value `c`
/// such that the stake of the values ≤ `c` is at least `(1 − kappa)` of all the stake. Stake
/// is summed exactly; 0 when there is no stake.
fn lower_quantile(col: impl Iterator<Item = (f64, u64)>, kappa: f64) -> f64 {
    let mut col: Vec<(f64, u64)> = col.filter(|(_, s)| *s > 0).collect();
    col.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: u128 = col.iter().map(|(_, s)| u128::from(*s)).sum();
    let need = (1.0 - kappa) * total as f64;
    let mut acc: u128 = 0;
    for (w, s) in &col {
        acc += u128::from(*s);
        if acc as f64 >= need {
            return *w;
        }
    }
    col.last().map_or(0.0, |(w, _)| *w)
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

    /// An exact half of the stake is not a majority: with two equal validators a uid needs
    /// both, and the lower of their two values is the consensus.
    #[test]
    fn exact_half_of_the_stake_takes_the_lower_value() {
        let uids = [0, 1];
        // A alone gives uid 1 weight; B gives everything to uid 0.
        let a = (10, vec![(0, 1), (1, 1)]);
        let b = (10, vec![(0, 1)]);
        let c = yuma_consensus(&uids, &[a.clone(), b.clone()], 0.5);
        assert_eq!(c.consensus, vec![0.5, 0.0], "{c:?}");
        assert_eq!(
            c.weights,
            vec![1.0, 0.0],
            "one of two equal validators admitted uid 1"
        );
        // In the other order, the same.
        let c = yuma_consensus(&uids, &[b, a], 0.5);
        assert_eq!(c.weights, vec![1.0, 0.0]);
        // A 50/50 split of stake among four validators: the lower half decides.
        let vs = [
            (3, vec![(0, 1)]),
            (1, vec![(0, 1)]),
            (2, vec![(1, 1)]),
            (2, vec![(1, 1)]),
        ];
        let c = yuma_consensus(&uids, &vs, 0.5);
        assert_eq!(c.consensus, vec![0.0, 0.0]);
        assert_eq!(c.weights, vec![0.0, 0.0]);
        // One unit of stake more than half is a majority.
        let vs = [(5, vec![(0, 1)]), (4, vec![(1, 1)])];
        let c = yuma_consensus(&uids, &vs, 0.5);
        assert_eq!(c.weights, vec![1.0, 0.0]);
    }

    /// kappa 1: every validator must agree (the smallest value any gave); a small kappa: a
    /// holder of more than kappa of the stake decides alone.
    #[test]
    fn kappa_bounds() {
        let uids = [0];
        let vs = [(1, vec![(0, 3)]), (1, vec![(0, 1)]), (1, vec![])];
        let c = yuma_consensus(&uids, &vs, 1.0);
        assert_eq!(c.consensus, vec![0.0]);
        let vs = [(1, vec![(0, 3), (1, 1)]), (1, vec![(0, 1), (1, 1)])];
        let c = yuma_consensus(&[0, 1], &vs, 1.0);
        assert_eq!(c.consensus, vec![0.5, 0.25]);
        let c = yuma_consensus(&[0, 1], &vs, 0.25);
        assert_eq!(c.consensus, vec![0.75, 0.5]);
    }

    #[test]
    fn empty_and_unknown_uids() {
        let c = yuma_consensus(&[], &[(1, vec![(5, 1)])], 0.5);
        assert!(c.weights.is_empty());
        let c = yuma_consensus(&[1], &[(1, vec![(5, 1)])], 0.5);
        assert_eq!(c.weights, vec![0.0]);
        // A uid listed twice does not index out of bounds.
        let c = yuma_consensus(&[1, 1], &[(1, vec![(1, 1)])], 0.5);
        assert_eq!(c.weights.len(), 2);
    }
}
