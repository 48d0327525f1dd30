//! OpenSkill ratings: the Weng–Lin (2011) Bayesian approximation with the Plackett–Luce model,
//! one player per team ("Algorithm 4" of Weng & Lin, JMLR 12), exactly as the reference computes
//! it with Python `openskill` (the version pinned in scripts/requirements.txt,
//! `PlackettLuce(beta=7, tau=0.1)`; tests/openskill_python.rs checks μ, σ and the ordinal
//! against it to 1e-9).
//!
//! For a match of k players with ratings (μ_i, σ_i) and ranks r(i) (0 = best, ties share a rank):
//! ```text
//! σ_i² ← σ_i² + τ²                                  (dynamics, before the match)
//! c     = sqrt(Σ_i (σ_i² + β²))
//! Q_q   = Σ_{s : r(s) ≥ r(q)} exp(μ_s / c)           (players ranked at or below q)
//! A_q   = |{s : r(s) = r(q)}|                        (size of q's tie group)
//! p_iq  = exp(μ_i / c) / Q_q
//! Ω_i   = σ_i²/c · Σ_{q : r(q) ≤ r(i)} ( [r(q) = r(i)] − p_iq ) / A_q
//! Δ_i   = γ_i · σ_i²/c² · Σ_{q : r(q) ≤ r(i)} p_iq (1 − p_iq) / A_q,   γ_i = σ_i / c
//! μ_i  ← μ_i + Ω_i
//! σ_i  ← σ_i · sqrt(max(1 − Δ_i, κ))
//! ordinal = μ − 3σ
//! ```
//! Ties: in Ω the indicator is `[r(q) = r(i)]`, as in `openskill` (Weng & Lin write `[q = i]`),
//! so each member of a tie group counts every member's term as its own: two new players who tie
//! both gain what the winner of a two-player match gains, and a group of k players tied at −99
//! loses less the larger k is (new players, three scored above k at −99: each of the k loses
//! 3.46 μ for k = 1 and gains 0.58 for k = 4). `openskill` 6.1.3 also means to average μ
//! changes over a tie group, but that step changes nothing there (it compares each player with
//! itself), so it is not done here either.
//!
//! One difference, on purpose: the reference turns scores into ranks with `rank or index`, so
//! an exact 0.0 score (falsy in Python) is ranked by its position in the list; here scores are
//! ranked by value (SPEC §5), which is what the reference gives when passed these ranks.

use serde::{Deserialize, Serialize};

use crate::params::OpenSkillParams;

/// A player's skill belief.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rating {
    pub mu: f64,
    pub sigma: f64,
}

impl Rating {
    /// A new player's rating.
    pub fn new(p: &OpenSkillParams) -> Self {
        Self {
            mu: p.mu,
            sigma: p.sigma,
        }
    }

    /// The conservative skill estimate μ − 3σ (0 for a new player with the defaults).
    pub fn ordinal(&self) -> f64 {
        self.mu - 3.0 * self.sigma
    }
}

/// Ranks from scores: the highest score gets rank 0; equal scores share a rank (dense on the
/// position of the first of the group, as in competition ranking "1224"); a non-finite score
/// ranks below every finite one.
pub fn ranks_from_scores(scores: &[f64]) -> Vec<usize> {
    let key = |s: f64| if s.is_finite() { s } else { f64::NEG_INFINITY };
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| key(scores[b]).total_cmp(&key(scores[a])).then(a.cmp(&b)));
    let mut ranks = vec![0; scores.len()];
    for (pos, &i) in order.iter().enumerate() {
        ranks[i] = if pos > 0 && key(scores[order[pos - 1]]) == key(scores[i]) {
            ranks[order[pos - 1]]
        } else {
            pos
        };
    }
    ranks
}

/// Plays one match. `scores[i]` is player i's result (higher is better; ties allowed).
/// Returns the updated ratings in the input order. Zero players: nothing; one player: only the
/// τ dynamics apply (σ grows slightly, μ unchanged).
///
/// # Panics
/// If `players.len() != scores.len()` (a programming error, not a peer's input).
pub fn rate(p: &OpenSkillParams, players: &[Rating], scores: &[f64]) -> Vec<Rating> {
    assert_eq!(players.len(), scores.len(), "one score per player");
    let ranks = ranks_from_scores(scores);
    rate_ranked(p, players, &ranks)
}

/// As [`rate`], with ranks given (0 = best; equal ranks are ties).
pub fn rate_ranked(p: &OpenSkillParams, players: &[Rating], ranks: &[usize]) -> Vec<Rating> {
    assert_eq!(players.len(), ranks.len(), "one rank per player");
    let n = players.len();
    let tau2 = p.tau * p.tau;
    let sig2: Vec<f64> = players.iter().map(|r| r.sigma * r.sigma + tau2).collect();
    if n < 2 {
        return players
            .iter()
            .zip(&sig2)
            .map(|(r, s2)| Rating {
                mu: r.mu,
                sigma: s2.sqrt(),
            })
            .collect();
    }
    let beta2 = p.beta * p.beta;
    let c = sig2.iter().map(|s2| s2 + beta2).sum::<f64>().sqrt();
    // exp(μ/c) can overflow for extreme μ; subtracting the maximum leaves every p_iq unchanged.
    let mmax = players
        .iter()
        .map(|r| r.mu)
        .fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = players.iter().map(|r| ((r.mu - mmax) / c).exp()).collect();
    let q_sum: Vec<f64> = (0..n)
        .map(|q| (0..n).filter(|&s| ranks[s] >= ranks[q]).map(|s| e[s]).sum())
        .collect();
    let a: Vec<f64> = (0..n)
        .map(|q| (0..n).filter(|&s| ranks[s] == ranks[q]).count() as f64)
        .collect();

    (0..n)
        .map(|i| {
            let mut omega = 0.0;
            let mut delta = 0.0;
            for q in (0..n).filter(|&q| ranks[q] <= ranks[i]) {
                let piq = e[i] / q_sum[q];
                omega += (if ranks[q] == ranks[i] { 1.0 } else { 0.0 } - piq) / a[q];
                delta += piq * (1.0 - piq) / a[q];
            }
            let s2 = sig2[i];
            let gamma = s2.sqrt() / c;
            let mu = players[i].mu + s2 / c * omega;
            let shrink = (1.0 - gamma * s2 / (c * c) * delta).max(p.kappa);
            Rating {
                mu,
                sigma: s2.sqrt() * shrink.sqrt(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }

    fn p() -> OpenSkillParams {
        OpenSkillParams::default()
    }

    #[test]
    fn ranks_handle_ties_and_non_finite() {
        assert_eq!(ranks_from_scores(&[0.1, 0.3, 0.2]), vec![2, 0, 1]);
        assert_eq!(ranks_from_scores(&[1.0, 1.0, 0.5]), vec![0, 0, 2]);
        assert_eq!(ranks_from_scores(&[f64::NAN, -99.0, 0.0]), vec![2, 1, 0]);
        assert!(ranks_from_scores(&[]).is_empty());
    }

    #[test]
    fn new_player_ordinal_is_zero() {
        close(Rating::new(&p()).ordinal(), 0.0);
    }

    /// Two new players, the first wins. By hand:
    /// σ'² = (25/3)² + 0.1² = 69.4544…, c = sqrt(2 (σ'² + 49)) ; both exp(μ/c) equal, so
    /// Q_0 = 2e, Q_1 = e; winner: Ω = σ'²/c · (1 − ½), Δ = σ'/c · σ'²/c² · ¼;
    /// loser: Ω = σ'²/c · (−½) (its q = itself term is 1 − 1 = 0), Δ the same.
    #[test]
    fn two_players_match_hand_computation() {
        let s2: f64 = (25.0f64 / 3.0).powi(2) + 0.01;
        let c = (2.0 * (s2 + 49.0)).sqrt();
        let d_mu = s2 / c * 0.5;
        let delta = s2.sqrt() / c * s2 / (c * c) * 0.25;
        let sigma = s2.sqrt() * (1.0 - delta).sqrt();
        // Numbers as a second check (computed by hand from the lines above).
        close(c, 15.391_844_882_563_264);
        close(d_mu, 2.256_209_212_552_756);
        let r = rate(&p(), &[Rating::new(&p()); 2], &[1.0, 0.0]);
        close(r[0].mu, 25.0 + d_mu);
        close(r[1].mu, 25.0 - d_mu);
        close(r[0].sigma, sigma);
        close(r[1].sigma, sigma);
        assert!(r[0].ordinal() > 0.0 && r[1].ordinal() < 0.0);
    }

    /// Three new players ranked 0 > 1 > 2. With equal μ every exp(μ/c) = e, so
    /// Q = (3e, 2e, e) and p_i0 = 1/3, p_i1 = 1/2, p_i2 = 1:
    /// Ω_0 = k(1 − 1/3) = 2k/3, Ω_1 = k(−1/3 + 1/2) = k/6, Ω_2 = k(−1/3 − 1/2 + 0) = −5k/6,
    /// with k = σ'²/c; Δ_0 = g·2/9, Δ_1 = g(2/9 + 1/4), Δ_2 = g(2/9 + 1/4 + 0), g = σ'³/c³.
    #[test]
    fn three_players_match_hand_computation() {
        let s2: f64 = (25.0f64 / 3.0).powi(2) + 0.01;
        let c = (3.0 * (s2 + 49.0)).sqrt();
        let k = s2 / c;
        let g = s2.sqrt() * s2 / (c * c * c);
        let r = rate(&p(), &[Rating::new(&p()); 3], &[3.0, 2.0, 1.0]);
        close(r[0].mu, 25.0 + 2.0 * k / 3.0);
        close(r[1].mu, 25.0 + k / 6.0);
        close(r[2].mu, 25.0 - 5.0 * k / 6.0);
        close(r[0].sigma, (s2 * (1.0 - g * 2.0 / 9.0)).sqrt());
        close(r[1].sigma, (s2 * (1.0 - g * (2.0 / 9.0 + 0.25))).sqrt());
        close(r[2].sigma, (s2 * (1.0 - g * (2.0 / 9.0 + 0.25))).sqrt());
        // μ changes sum to zero for equal σ.
        close(r.iter().map(|x| x.mu - 25.0).sum::<f64>(), 0.0);
    }

    /// A two-way tie between new players, as the reference rates it: A = 2, Q = 2e for both,
    /// p = ½, and each player's Ω = k((1 − ½) + (1 − ½))/2 = k/2, what the winner of a
    /// two-player match gains; Δ = g(¼ + ¼)/2, the same as in that match.
    #[test]
    fn tie_counts_each_tied_players_terms_as_its_own() {
        let s2: f64 = (25.0f64 / 3.0).powi(2) + 0.01;
        let c = (2.0 * (s2 + 49.0)).sqrt();
        let won = rate(&p(), &[Rating::new(&p()); 2], &[1.0, 0.0]);
        let r = rate(&p(), &[Rating::new(&p()); 2], &[0.5, 0.5]);
        close(r[0].mu, 25.0 + s2 / c * 0.5);
        close(r[0].mu, won[0].mu);
        close(r[1].mu, r[0].mu);
        close(r[0].sigma, won[0].sigma);
        close(r[1].sigma, r[0].sigma);
        assert!(r[0].sigma < 25.0 / 3.0);
    }

    /// The reference's tie rule at −99: three new players scored above k new ones at −99;
    /// each missing one loses 3.46 μ alone, and gains 0.58 μ when four miss (values from
    /// Python `openskill` 6.1.3).
    #[test]
    fn missing_players_tied_at_minus_99_lose_less_the_more_of_them() {
        let mu_change = |k: usize| {
            let mut scores = vec![0.3, 0.2, 0.1];
            scores.extend(std::iter::repeat_n(-99.0, k));
            let r = rate(&p(), &vec![Rating::new(&p()); 3 + k], &scores);
            r[3 + k - 1].mu - 25.0
        };
        assert!((mu_change(1) - -3.456_658_473_605_163).abs() < 1e-9);
        assert!((mu_change(4) - 0.580_025_951_354_965_5).abs() < 1e-9);
    }

    #[test]
    fn one_and_zero_players() {
        assert!(rate(&p(), &[], &[]).is_empty());
        let r = rate(
            &p(),
            &[Rating {
                mu: 30.0,
                sigma: 2.0,
            }],
            &[1.0],
        );
        close(r[0].mu, 30.0);
        close(r[0].sigma, (4.0f64 + 0.01).sqrt());
    }

    #[test]
    fn upset_moves_more_than_expected_win_and_input_order_does_not_matter() {
        let strong = Rating {
            mu: 35.0,
            sigma: 3.0,
        };
        let weak = Rating {
            mu: 15.0,
            sigma: 3.0,
        };
        let expected = rate(&p(), &[strong, weak], &[1.0, 0.0]);
        let upset = rate(&p(), &[strong, weak], &[0.0, 1.0]);
        assert!(upset[1].mu - weak.mu > expected[0].mu - strong.mu);
        let swapped = rate(&p(), &[weak, strong], &[0.0, 1.0]);
        close(swapped[1].mu, expected[0].mu);
        close(swapped[0].mu, expected[1].mu);
    }

    #[test]
    fn extreme_mu_does_not_overflow() {
        let r = rate(
            &p(),
            &[
                Rating {
                    mu: 1e6,
                    sigma: 1.0,
                },
                Rating {
                    mu: -1e6,
                    sigma: 1.0,
                },
            ],
            &[0.0, 1.0],
        );
        assert!(r
            .iter()
            .all(|x| x.mu.is_finite() && x.sigma.is_finite() && x.sigma > 0.0));
    }

    #[test]
    fn repeated_wins_raise_ordinal_and_shrink_sigma() {
        let mut a = Rating::new(&p());
        let mut b = Rating::new(&p());
        for _ in 0..20 {
            let r = rate(&p(), &[a, b], &[1.0, 0.0]);
            a = r[0];
            b = r[1];
        }
        assert!(a.ordinal() > 10.0 && b.ordinal() < -10.0);
        assert!(a.sigma < 25.0 / 3.0 && b.sigma < 25.0 / 3.0, "{a:?} {b:?}");
    }
}
