//! Who is aggregated, who is evaluated, and who copied (SPEC §4–5).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::rng::derive_seed;
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

/// A challenger a validator may look at: a peer with an accepted upload outside the
/// aggregation set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalCandidate {
    pub uid: Uid,
    /// Window this validator first saw it registered.
    pub first_seen: Window,
    /// Last window this validator looked at its upload (`None`: never).
    pub last_looked_at: Option<Window>,
    /// The loss score this validator last measured for it (screen or full evaluation).
    pub promise: Option<f64>,
}

/// The up to `looks` challengers a validator looks at (downloads and screens) in window `w`,
/// in order. Half of the looks (rounded up) go to contenders: challengers whose last measured
/// loss score was positive, best first, so that one that did well is measured again every
/// window until its rating shows what it is worth. The rest follow the rotation: the ones
/// never looked at first, newest registration first, so a newcomer is looked at in its first
/// scorable window however many others wait; then the least recently looked at, so nobody
/// starves. Ties go by a hash of (`seed`, `w`, uid). Validators pass the same `seed` (the
/// run's), so with the same history they look at the same challengers: the chain's consensus
/// needs the validators holding most of the stake to have measured a peer before it counts.
pub fn look_at_order(candidates: &[EvalCandidate], w: Window, seed: u64, looks: usize) -> Vec<Uid> {
    let tie = |u: Uid| derive_seed(seed, &[TAG_EVAL, w, u64::from(u)]);
    let mut contenders: Vec<(f64, u64, Uid)> = candidates
        .iter()
        .filter_map(|c| {
            c.promise
                .filter(|p| *p > 0.0)
                .map(|p| (p, tie(c.uid), c.uid))
        })
        .collect();
    contenders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut out: Vec<Uid> = contenders
        .into_iter()
        .map(|c| c.2)
        .take(looks.div_ceil(2))
        .collect();
    let mut rotation: Vec<((u8, u64, u64), Uid)> = candidates
        .iter()
        .filter(|c| !out.contains(&c.uid))
        .map(|c| {
            let key = match c.last_looked_at {
                None => (0, u64::MAX - c.first_seen, tie(c.uid)),
                Some(l) => (1, l, tie(c.uid)),
            };
            (key, c.uid)
        })
        .collect();
    rotation.sort_unstable();
    rotation.dedup_by_key(|k| k.1);
    let room = looks.saturating_sub(out.len());
    out.extend(rotation.into_iter().map(|(_, u)| u).take(room));
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
                first_seen: 0,
                last_looked_at: None,
                promise: None,
            })
            .collect()
    }

    #[test]
    fn newcomers_are_looked_at_first_newest_first_then_the_longest_waiting() {
        let mut c = cands(6);
        c[0].last_looked_at = Some(7);
        c[1].last_looked_at = Some(3);
        c[2].last_looked_at = Some(5);
        c[3].first_seen = 2;
        c[4].first_seen = 9;
        c[5].first_seen = 4;
        assert_eq!(look_at_order(&c, 10, 1, 6), vec![4, 5, 3, 1, 2, 0]);
        assert_eq!(look_at_order(&c, 10, 1, 2), vec![4, 5], "at most `looks`");
        assert!(look_at_order(&[], 10, 1, 6).is_empty());
    }

    #[test]
    fn the_look_at_order_is_shared_by_a_seed_and_changes_with_the_window() {
        let c = cands(50);
        let a = look_at_order(&c, 3, 11, 50);
        assert_eq!(a.len(), 50);
        assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 50);
        assert_eq!(a, look_at_order(&c, 3, 11, 50), "same seed, same order");
        assert_ne!(
            a,
            look_at_order(&c, 4, 11, 50),
            "ties broken anew each window"
        );
        assert_ne!(a, look_at_order(&c, 3, 12, 50));
    }

    #[test]
    fn half_the_looks_go_to_challengers_that_did_well_best_first() {
        let mut c = cands(10);
        for (u, p) in [(2, 0.3), (5, 0.9), (7, -0.5), (8, 0.1), (9, 0.0)] {
            c[u].promise = Some(p);
            c[u].last_looked_at = Some(4);
        }
        let order = look_at_order(&c, 5, 1, 6);
        assert_eq!(order.len(), 6);
        assert_eq!(order[..3], [5, 2, 8], "contenders, best first: {order:?}");
        assert!(
            order[3..]
                .iter()
                .all(|u| c[*u as usize].last_looked_at.is_none()),
            "then the rotation, never looked at first: {order:?}"
        );
        // With looks to spare, everyone.
        assert_eq!(look_at_order(&c, 5, 1, 20).len(), 10);
    }

    #[test]
    fn looking_in_order_sweeps_every_candidate_without_starving_anyone() {
        let mut c = cands(100);
        let mut max_gap = 0;
        for w in 0..200u64 {
            for u in look_at_order(&c, w, 1, 10) {
                c[u as usize].last_looked_at = Some(w);
            }
            if w >= 10 {
                let gap = c
                    .iter()
                    .map(|x| w - x.last_looked_at.unwrap())
                    .max()
                    .unwrap();
                max_gap = max_gap.max(gap);
            }
        }
        // 100 candidates, 10 looks a window: everyone every 10 windows.
        assert_eq!(max_gap, 9, "max gap {max_gap}");
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
