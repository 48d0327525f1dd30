//! Yuma-style consensus over validators' weights (a simplified form of Bittensor's Yuma
//! consensus): a deterministic function of the submitted weights and stakes. The one consensus
//! of the system: the chain ledger computes its consensus weights with it, the simulators use it
//! to simulate what the chain computes, and the EVM contract (`contracts/Yuma.sol`) computes the
//! same integers (checked on random cases: `the_contract_computes_the_nodes_yuma` in
//! crates/evm/tests/contract.rs).
//!
//! In integers, with [`ONE`] = 10⁹ and `kappa` in parts per [`ONE`], for every uid `u`:
//! 1. each validator's weights are normalised, `W[v][u] = ⌊w[v][u] · ONE / Σ_u w[v][u]⌋` (all 0
//!    when the validator gave no registered uid weight);
//! 2. the consensus `C[u]` is the stake-weighted lower `kappa`-quantile of `W[·][u]` (kappa 0.5:
//!    the lower stake-weighted median): the smallest value `c` such that validators holding
//!    stake `s` with `s · ONE ≥ (ONE − kappa) · total stake` gave `u` at most `c`. For kappa < 1
//!    that is the largest value that validators holding *more* than `kappa` of the stake gave
//!    `u` at least, so an exact half of the stake is not a majority: with two equal validators
//!    a uid gets the lower of their two values (nothing unless both give it weight); with
//!    kappa 1, the smallest value any validator gave;
//! 3. every weight is clipped to the consensus, `W'[v][u] = min(W[v][u], C[u])`, so a minority
//!    cannot lift a uid above what the majority gave it;
//! 4. rank `R[u] = Σ_v stake[v] · W'[v][u]`; `R[u] / Σ R` are the consensus weights, which are
//!    the rewards and rank the next aggregation set.

use std::collections::BTreeMap;

/// The fixed point of normalised weights and of kappa.
pub const ONE: u64 = 1_000_000_000;

/// Consensus of one window. Vectors are indexed by position in `uids`.
#[derive(Debug, Clone, PartialEq)]
pub struct Consensus {
    pub uids: Vec<u32>,
    /// Stake-weighted lower kappa-quantile per uid (`fixed` / [`ONE`]).
    pub consensus: Vec<f64>,
    /// Normalised clipped ranks (sum 1, or all 0 when nobody has weight).
    pub weights: Vec<f64>,
    /// The integers: `C[u]` and `R[u]` as defined above.
    pub fixed: Vec<u64>,
    pub ranks: Vec<u128>,
}

/// kappa as a fraction (0, 1] in parts per [`ONE`] (rounded).
pub fn kappa_fixed(kappa: f64) -> u64 {
    (kappa.clamp(0.0, 1.0) * ONE as f64).round() as u64
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
    let stakes: Vec<u64> = validators.iter().map(|(s, _)| *s).collect();
    let rows: Vec<Vec<u64>> = validators
        .iter()
        .map(|(_, ws)| dense_row(&index, n, ws))
        .collect();
    let (fixed, ranks) = yuma_fixed(n, &stakes, &rows, kappa_fixed(kappa));
    let sum: u128 = ranks.iter().sum();
    let weights = ranks
        .iter()
        .map(|&r| if sum > 0 { r as f64 / sum as f64 } else { 0.0 })
        .collect();
    Consensus {
        uids: uids.to_vec(),
        consensus: fixed.iter().map(|&c| c as f64 / ONE as f64).collect(),
        weights,
        fixed,
        ranks,
    }
}

/// The rule in integers over `n` uids: `rows[v]` holds validator v's raw weight for each uid
/// (stake 0: ignored); returns (`C`, `R`). `contracts/Yuma.sol` computes the same.
pub fn yuma_fixed(
    n: usize,
    stakes: &[u64],
    rows: &[Vec<u64>],
    kappa: u64,
) -> (Vec<u64>, Vec<u128>) {
    let w: Vec<Vec<u64>> = rows.iter().map(|r| normalised(r, n)).collect();
    let total: u128 = stakes.iter().map(|&s| u128::from(s)).sum();
    let mut c = vec![0u64; n];
    let mut rank = vec![0u128; n];
    for i in 0..n {
        let col = stakes
            .iter()
            .zip(&w)
            .filter(|(s, _)| **s > 0)
            .map(|(s, r)| (r[i], *s));
        c[i] = lower_quantile(col, total, kappa);
        for (s, r) in stakes.iter().zip(&w) {
            rank[i] += u128::from(*s) * u128::from(r[i].min(c[i]));
        }
    }
    (c, rank)
}

/// One validator's raw weights over the `n` registered uids (by position in `index`).
fn dense_row(index: &BTreeMap<u32, usize>, n: usize, ws: &[(u32, u16)]) -> Vec<u64> {
    let mut row = vec![0u64; n];
    for &(u, w) in ws {
        if let Some(&i) = index.get(&u) {
            row[i] += u64::from(w);
        }
    }
    row
}

/// `⌊x · ONE / Σ x⌋` for the first `n` entries (missing ones count 0; all 0 when Σ is 0).
fn normalised(row: &[u64], n: usize) -> Vec<u64> {
    let row: Vec<u128> = (0..n)
        .map(|i| u128::from(row.get(i).copied().unwrap_or(0)))
        .collect();
    let sum: u128 = row.iter().sum();
    row.iter()
        .map(|&x| (x * u128::from(ONE)).checked_div(sum).unwrap_or(0) as u64)
        .collect()
}

/// The smallest value whose stake, with all smaller ones, reaches `(ONE − kappa) / ONE` of
/// `total`; 0 when there is no stake.
fn lower_quantile(col: impl Iterator<Item = (u64, u64)>, total: u128, kappa: u64) -> u64 {
    let mut col: Vec<(u64, u64)> = col.collect();
    if col.is_empty() || total == 0 {
        return 0;
    }
    col.sort_by_key(|&(w, _)| w);
    let need = u128::from(ONE - kappa.min(ONE)) * total;
    let mut acc: u128 = 0;
    for &(w, s) in &col {
        acc += u128::from(s);
        if acc * u128::from(ONE) >= need {
            return w;
        }
    }
    col.last().map_or(0, |&(w, _)| w)
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
