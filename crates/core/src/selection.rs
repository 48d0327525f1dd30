//! Who is aggregated, who is evaluated, and who copied (SPEC §4–5).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::rng::{derive_seed, SplitMix64};
use crate::{Millis, Uid, Window};

/// Purpose tag for derived seeds, so streams never collide.
const TAG_EVAL: u64 = 0xE7A1;

/// The aggregation set of a window, fixed from the consensus weights when its uploads are due.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregationSet {
    /// The top G: aggregated when their upload is accepted.
    pub primary: Vec<Uid>,
    /// The next ones in order: each replaces a missing primary.
    pub reserves: Vec<Uid>,
}

impl AggregationSet {
    /// Everyone whose upload may be gathered.
    pub fn all(&self) -> impl Iterator<Item = Uid> + '_ {
        self.primary.iter().chain(&self.reserves).copied()
    }

    /// The peers actually aggregated: primaries whose upload was accepted, topped up from the
    /// accepted reserves in order, to at most `primary.len()` peers. Sorted by uid, so every
    /// replica sums in the same order.
    pub fn gather(&self, accepted: &BTreeSet<Uid>) -> Vec<Uid> {
        let mut out: Vec<Uid> = self
            .primary
            .iter()
            .copied()
            .filter(|u| accepted.contains(u))
            .collect();
        let missing = self.primary.len() - out.len();
        out.extend(
            self.reserves
                .iter()
                .copied()
                .filter(|u| accepted.contains(u))
                .take(missing),
        );
        out.sort_unstable();
        out
    }
}

/// Builds the aggregation set of a window from the consensus weights on chain when its uploads
/// are due (the first block of the next window): the peers with positive consensus weight,
/// highest first (ties by lower uid). A peer with zero weight is never aggregated: not an
/// attacker the validators scored at zero, not a newcomer they have not scored yet, and, in a
/// young network before any validator has set weights, nobody at all. So an update is applied
/// only once a validator has measured its sender; newcomers enter once the validators, who
/// evaluate every on-time upload in rotation, give them weight.
/// The first `g` are primaries, the next `reserves` reserves. Peers not in `eligible`
/// (deregistered) are ignored even if they still have weight.
pub fn aggregation_set(
    consensus: &BTreeMap<Uid, f64>,
    eligible: &BTreeSet<Uid>,
    g: usize,
    reserves: usize,
) -> AggregationSet {
    let mut ranked: Vec<(Uid, f64)> = consensus
        .iter()
        .filter(|(u, &x)| x > 0.0 && x.is_finite() && eligible.contains(u))
        .map(|(&u, &x)| (u, x))
        .collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let order: Vec<Uid> = ranked.into_iter().map(|(u, _)| u).collect();
    let primary: Vec<Uid> = order.iter().copied().take(g).collect();
    let reserves: Vec<Uid> = order.iter().copied().skip(g).take(reserves).collect();
    AggregationSet { primary, reserves }
}

/// A candidate for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalCandidate {
    pub uid: Uid,
    /// Current rating ordinal, used to form bins.
    pub ordinal: f64,
    /// Last window it was evaluated in (`None`: never).
    pub last_evaluated: Option<Window>,
}

/// Picks up to `n` peers to evaluate in window `w`. Candidates are sorted by ordinal and cut
/// into `bins` bins of near-equal size; each bin gets a quota proportional to its size (largest
/// remainder, ties to the better bin); inside a bin peers are drawn without replacement with
/// weight `1 + windows since last evaluated` (never evaluated: `2 + w`), so nobody starves and
/// every rating level is looked at every window. Result sorted by uid.
pub fn select_for_evaluation(
    candidates: &[EvalCandidate],
    w: Window,
    n: usize,
    bins: usize,
    seed: u64,
) -> Vec<Uid> {
    let mut out = draw_for_evaluation(candidates, w, n, bins, seed);
    out.sort_unstable();
    out
}

/// [`select_for_evaluation`]'s draw in the order it was drawn (better bins first; all of
/// them, by uid, when there are at most `n`).
pub fn draw_for_evaluation(
    candidates: &[EvalCandidate],
    w: Window,
    n: usize,
    bins: usize,
    seed: u64,
) -> Vec<Uid> {
    if n == 0 || candidates.is_empty() {
        return Vec::new();
    }
    if candidates.len() <= n {
        let mut all: Vec<Uid> = candidates.iter().map(|c| c.uid).collect();
        all.sort_unstable();
        all.dedup();
        return all;
    }
    let mut sorted: Vec<&EvalCandidate> = candidates.iter().collect();
    sorted.sort_by(|a, b| b.ordinal.total_cmp(&a.ordinal).then(a.uid.cmp(&b.uid)));
    let bins = bins.clamp(1, sorted.len());
    let len = sorted.len();
    let bounds: Vec<(usize, usize)> = (0..bins)
        .map(|b| (b * len / bins, (b + 1) * len / bins))
        .collect();
    // Largest-remainder quotas.
    let mut quotas: Vec<usize> = bounds.iter().map(|(s, e)| (e - s) * n / len).collect();
    let mut left = n - quotas.iter().sum::<usize>();
    let mut rems: Vec<(usize, usize)> = bounds
        .iter()
        .enumerate()
        .map(|(b, (s, e))| ((e - s) * n % len, b))
        .collect();
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, b) in rems {
        if left == 0 {
            break;
        }
        quotas[b] += 1;
        left -= 1;
    }
    let mut rng = SplitMix64::new(derive_seed(seed, &[TAG_EVAL, w]));
    let mut out = Vec::with_capacity(n);
    for (b, &(s, e)) in bounds.iter().enumerate() {
        let mut pool: Vec<(Uid, f64)> = sorted[s..e]
            .iter()
            .map(|c| {
                let age = match c.last_evaluated {
                    Some(l) => 1.0 + w.saturating_sub(l) as f64,
                    None => 2.0 + w as f64,
                };
                (c.uid, age)
            })
            .collect();
        for _ in 0..quotas[b].min(pool.len()) {
            let total: f64 = pool.iter().map(|p| p.1).sum();
            let mut x = rng.next_f64() * total;
            let mut pick = pool.len() - 1;
            for (i, p) in pool.iter().enumerate() {
                if x < p.1 {
                    pick = i;
                    break;
                }
                x -= p.1;
            }
            out.push(pool.swap_remove(pick).0);
        }
    }
    out
}

/// Fraction of index overlap of two uploads: |A ∩ B| / min(|A|, |B|) (0 if either is empty).
/// Inputs need not be sorted; duplicates count once.
pub fn index_overlap(a: &[u64], b: &[u64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_unstable();
    a.dedup();
    b.sort_unstable();
    b.dedup();
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / a.len().min(b.len()) as f64
}

/// One upload as seen by the copy check: who, the store's timestamp, and the keys of its
/// selected coordinates ([`copy_keys`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadIndices {
    pub uid: Uid,
    pub store_time: Millis,
    pub indices: Vec<u64>,
}

/// One tensor of an upload as the copy check sees it: its number of chunks and the in-chunk
/// indices of its selected values (`k` per chunk, chunks in order; empty when the tensor is sent
/// whole, which says nothing about copying).
#[derive(Debug, Clone, Copy)]
pub struct SelectedIndices<'a> {
    pub n_chunks: usize,
    pub k: usize,
    pub idx: &'a [u16],
}

/// The copy-check keys of an upload: one per selected coordinate,
/// `(chunk number over the whole model) << 16 | in-chunk index`, chunks numbered across the
/// tensors in layout order. In-chunk indices are below 65,536 (a chunk holds at most that many
/// values), so two coordinates share a key only if they are the same coordinate, for any model
/// size (a 72B model has about 17 million chunks).
pub fn copy_keys<'a>(tensors: impl IntoIterator<Item = SelectedIndices<'a>>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut base: u64 = 0;
    for t in tensors {
        let k = t.k.max(1);
        for (i, &idx) in t.idx.iter().enumerate() {
            let chunk = base + (i / k) as u64;
            out.push((chunk << 16) | u64::from(idx));
        }
        base += t.n_chunks as u64;
    }
    out
}

/// A detected copy: `copier` uploaded after `original` with `overlap` ≥ the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Copy {
    pub copier: Uid,
    pub original: Uid,
    pub overlap: f64,
}

/// Every pair with overlap ≥ `threshold`; the later uploader is blamed. With equal timestamps
/// nobody can tell who copied, so both are blamed. Returns the copies found (sorted by copier,
/// then original).
pub fn detect_copies(uploads: &[UploadIndices], threshold: f64) -> Vec<Copy> {
    let mut sorted: Vec<UploadIndices> = uploads.to_vec();
    for u in &mut sorted {
        u.indices.sort_unstable();
        u.indices.dedup();
    }
    let mut out = Vec::new();
    for i in 0..sorted.len() {
        for j in i + 1..sorted.len() {
            let (a, b) = (&sorted[i], &sorted[j]);
            if a.uid == b.uid {
                continue;
            }
            let ov = index_overlap(&a.indices, &b.indices);
            if ov + 1e-12 < threshold {
                continue;
            }
            use std::cmp::Ordering::*;
            match a.store_time.cmp(&b.store_time) {
                Less => out.push(Copy {
                    copier: b.uid,
                    original: a.uid,
                    overlap: ov,
                }),
                Greater => out.push(Copy {
                    copier: a.uid,
                    original: b.uid,
                    overlap: ov,
                }),
                Equal => {
                    out.push(Copy {
                        copier: a.uid,
                        original: b.uid,
                        overlap: ov,
                    });
                    out.push(Copy {
                        copier: b.uid,
                        original: a.uid,
                        overlap: ov,
                    });
                }
            }
        }
    }
    out.sort_by(|x, y| x.copier.cmp(&y.copier).then(x.original.cmp(&y.original)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[Uid]) -> BTreeSet<Uid> {
        v.iter().copied().collect()
    }

    #[test]
    fn aggregation_set_takes_top_by_weight_with_uid_tiebreak() {
        let cw: BTreeMap<Uid, f64> = [(1, 0.1), (2, 0.4), (3, 0.4), (4, 0.05), (5, 0.0)].into();
        let a = aggregation_set(&cw, &set(&[1, 2, 3, 4, 5]), 2, 2);
        assert_eq!(a.primary, vec![2, 3]);
        assert_eq!(a.reserves, vec![1, 4]);
    }

    #[test]
    fn peers_without_weight_are_never_aggregated() {
        let elig = set(&(0..50).collect::<Vec<_>>());
        // Before any validator has set weights: nobody.
        let a = aggregation_set(&BTreeMap::new(), &elig, 5, 3);
        assert!(a.primary.is_empty() && a.reserves.is_empty(), "{a:?}");
        // Once someone has weight, zero-weight peers are not aggregated.
        let cw: BTreeMap<Uid, f64> = [(7, 1.0), (9, 0.5), (3, 0.0)].into();
        let b = aggregation_set(&cw, &elig, 5, 3);
        assert_eq!(b.primary, vec![7, 9]);
        assert!(b.reserves.is_empty());
        // Non-finite or negative weights count as none.
        let bad: BTreeMap<Uid, f64> = [(1, f64::NAN), (2, -1.0), (4, f64::INFINITY)].into();
        assert!(aggregation_set(&bad, &elig, 5, 3).primary.is_empty());
    }

    #[test]
    fn aggregation_set_edge_cases() {
        let none = aggregation_set(&BTreeMap::new(), &BTreeSet::new(), 20, 10);
        assert!(none.primary.is_empty() && none.reserves.is_empty());
        let cw: BTreeMap<Uid, f64> = [(3, 1.0)].into();
        let one = aggregation_set(&cw, &set(&[3]), 20, 10);
        assert_eq!(one.primary, vec![3]);
        assert!(one.reserves.is_empty());
        // Deregistered peers with weight are ignored.
        let cw: BTreeMap<Uid, f64> = [(1, 0.5), (2, 0.5)].into();
        assert_eq!(aggregation_set(&cw, &set(&[2]), 2, 0).primary, vec![2]);
    }

    #[test]
    fn reserves_replace_missing_primaries_in_order() {
        let a = AggregationSet {
            primary: vec![1, 2, 3],
            reserves: vec![10, 11, 12],
        };
        assert_eq!(a.gather(&set(&[1, 2, 3, 10])), vec![1, 2, 3]);
        assert_eq!(a.gather(&set(&[1, 3, 11, 12])), vec![1, 3, 11]);
        assert_eq!(a.gather(&set(&[12])), vec![12]);
        assert!(a.gather(&set(&[])).is_empty(), "all missing");
        assert_eq!(
            a.gather(&set(&[10, 11, 12, 99])),
            vec![10, 11, 12],
            "outsiders never gathered"
        );
    }

    fn cands(n: u32) -> Vec<EvalCandidate> {
        (0..n)
            .map(|u| EvalCandidate {
                uid: u,
                ordinal: u as f64,
                last_evaluated: None,
            })
            .collect()
    }

    #[test]
    fn evaluation_picks_n_distinct_deterministically() {
        let c = cands(100);
        let s = select_for_evaluation(&c, 3, 20, 5, 11);
        assert_eq!(s.len(), 20);
        assert_eq!(s.iter().collect::<BTreeSet<_>>().len(), 20);
        assert_eq!(s, select_for_evaluation(&c, 3, 20, 5, 11));
        // Every bin of 20 by rating contributes 4.
        for b in 0..5u32 {
            assert_eq!(s.iter().filter(|&&u| u / 20 == b).count(), 4, "bin {b}");
        }
    }

    #[test]
    fn evaluation_edge_cases() {
        assert!(select_for_evaluation(&[], 0, 20, 5, 0).is_empty());
        assert!(select_for_evaluation(&cands(5), 0, 0, 5, 0).is_empty());
        assert_eq!(select_for_evaluation(&cands(1), 0, 20, 5, 0), vec![0]);
        assert_eq!(
            select_for_evaluation(&cands(5), 0, 20, 5, 0),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(
            select_for_evaluation(&cands(30), 0, 7, 100, 0).len(),
            7,
            "more bins than quota"
        );
    }

    #[test]
    fn rotation_does_not_starve_anyone() {
        let mut c = cands(100);
        let mut w_max_gap = 0;
        let mut last = vec![0u64; 100];
        for w in 0..200u64 {
            for u in select_for_evaluation(&c, w, 10, 5, 1) {
                let cu = &mut c[u as usize];
                cu.last_evaluated = Some(w);
                last[u as usize] = w;
            }
            if w >= 100 {
                let gap = last.iter().map(|&l| w - l).max().unwrap();
                w_max_gap = w_max_gap.max(gap);
            }
        }
        assert!(c.iter().all(|x| x.last_evaluated.is_some()));
        // Uniform-at-random would leave gaps of ~40+ windows; weighting by age keeps them short.
        assert!(w_max_gap < 35, "max gap {w_max_gap}");
    }

    #[test]
    fn overlap_counts_common_indices() {
        assert_eq!(index_overlap(&[1, 2, 3, 4], &[3, 4, 5, 6]), 0.5);
        assert_eq!(index_overlap(&[], &[1]), 0.0);
        assert_eq!(
            index_overlap(&[4, 3, 3], &[3, 4, 9, 10]),
            1.0,
            "dedup, smaller set"
        );
    }

    #[test]
    fn copy_keys_never_collide_across_chunks_of_a_large_model() {
        // The covenant-72b embedding alone, [262144, 8192], is 512 × 128 = 65,536 tiles of
        // 64 × 64: chunk 65,536 exists in the next tensor. The same in-chunk indices in chunks
        // c and c + 65,536 are different coordinates and must get different keys (a u32 key
        // `chunk · 65536 + idx` wrapped and called them the same).
        let idx: Vec<u16> = (0..64).map(|i| i * 64).collect();
        let a = copy_keys([SelectedIndices {
            n_chunks: 65_536,
            k: 64,
            idx: &idx[..],
        }]);
        let b = copy_keys([
            SelectedIndices {
                n_chunks: 65_536,
                k: 64,
                idx: &[],
            },
            SelectedIndices {
                n_chunks: 1,
                k: 64,
                idx: &idx[..],
            },
        ]);
        assert_eq!(a.len(), 64);
        assert_eq!(
            index_overlap(&a, &b),
            0.0,
            "chunk 0 and chunk 65,536 are not the same"
        );
        // A tensor sent whole carries no keys; a re-sent copy overlaps fully.
        assert_eq!(b.len(), 64);
        assert_eq!(b[0], 65_536u64 << 16);
        assert_eq!(index_overlap(&a, &a.clone()), 1.0);
    }

    #[test]
    fn copies_blame_the_later_uploader() {
        let up = |uid, t, idx: Vec<u64>| UploadIndices {
            uid,
            store_time: t,
            indices: idx,
        };
        let orig: Vec<u64> = (0..100).collect();
        let copy: Vec<u64> = (0..40).chain(1000..1060).collect(); // 40% overlap
        let near: Vec<u64> = (0..39).chain(2000..2061).collect(); // 39%
        let c = detect_copies(
            &[
                up(5, 200, copy.clone()),
                up(1, 100, orig.clone()),
                up(7, 300, near),
            ],
            0.40,
        );
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].copier, c[0].original), (5, 1));
        let tie = detect_copies(&[up(1, 100, orig.clone()), up(2, 100, orig)], 0.40);
        assert_eq!(tie.iter().map(|c| c.copier).collect::<Vec<_>>(), vec![1, 2]);
        assert!(detect_copies(&[], 0.4).is_empty());
        assert!(detect_copies(&[up(1, 1, copy)], 0.4).is_empty());
    }
}
