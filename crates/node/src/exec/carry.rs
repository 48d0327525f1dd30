//! Overlap without lost work: a miner's live model carried from window to window while the
//! outer steps of the windows it sent are still being gathered (docs/NODES.md, "Overlap").
//!
//! With `C` the canonical model, `P_v` the step the miner's own upload of a sent window `v`
//! makes alone (outer lr × its decoded update; `v`'s outer step has not landed yet), and `δ`
//! what the window being trained has done so far, the live model is kept at
//!
//! ```text
//! L = C − Σ_pending P_v − δ            (the window's start S = C − Σ_pending P_v, δ = S − L)
//! ```
//!
//! so it trains on from its own upload as a stand-in for the network's step. After window `w`
//! is compressed (from `δ_w`, with error feedback), `P_w` joins the pending set and the next
//! window starts at `S − P_w`; what the upload did not carry stays in the error feedback, as
//! without overlap. When window `w`'s outer step lands (`C → C'`), `w` leaves the pending set
//! and `L` and `S` move by `(C' − C) + P_w`: the network's step replaces the miner's own, and
//! `δ` is untouched. So every inner step is in exactly one window's `δ`, compressed with that
//! window, whenever the outer steps land.

use covenant_core::Window;

/// The live model's starting point and the progress it carries (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Carry {
    start: Vec<Vec<f32>>,
    pending: Vec<(Window, Vec<Vec<f32>>)>,
}

impl Carry {
    /// More windows than this in flight: the live model goes back to the canonical one (a
    /// node that far behind is catching up, not overlapping).
    pub const MAX_PENDING: usize = 4;

    /// Window `w`'s upload was sent; alone it moves the window's start by `−own`, to `next`,
    /// where the next window starts. `None` when too many windows would be pending.
    pub fn sent(
        prev: Option<Carry>,
        w: Window,
        own: Vec<Vec<f32>>,
        next: Vec<Vec<f32>>,
    ) -> Option<Carry> {
        let mut pending = prev.map(|c| c.pending).unwrap_or_default();
        pending.push((w, own));
        (pending.len() <= Self::MAX_PENDING).then_some(Carry {
            start: next,
            pending,
        })
    }

    /// Where the window being trained started: its pseudo-gradient is `start − live`.
    pub fn start(&self) -> &[Vec<f32>] {
        &self.start
    }

    /// Windows sent whose outer step has not landed.
    #[cfg(test)]
    fn pending(&self) -> Vec<Window> {
        self.pending.iter().map(|p| p.0).collect()
    }

    /// Window `w`'s outer step moved the canonical model from `c0` to `c1`: moves `live` and
    /// the start by `(c1 − c0) + P_w` and forgets `w` (and any older window still pending,
    /// whose outer step can no longer land after `w`'s).
    pub fn landed(&mut self, w: Window, c0: &[Vec<f32>], c1: &[Vec<f32>], live: &mut [Vec<f32>]) {
        let own = self
            .pending
            .iter()
            .position(|p| p.0 == w)
            .map(|i| self.pending.remove(i).1);
        self.pending.retain(|p| p.0 > w);
        for (t, ((l, s), (b, a))) in live
            .iter_mut()
            .zip(self.start.iter_mut())
            .zip(c0.iter().zip(c1))
            .enumerate()
        {
            let p = own.as_ref().map(|o| o[t].as_slice());
            for (i, (l, s)) in l.iter_mut().zip(s.iter_mut()).enumerate() {
                let shift = a[i] - b[i] + p.map_or(0.0, |p| p[i]);
                *l += shift;
                *s += shift;
            }
        }
    }
}

/// `a − b`, tensor by tensor.
pub fn diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<Vec<f32>> {
    a.iter()
        .zip(b)
        .map(|(a, b)| a.iter().zip(b).map(|(a, b)| a - b).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[f32]) -> Vec<Vec<f32>> {
        vec![x.to_vec()]
    }

    fn sub(a: &[Vec<f32>], b: &[Vec<f32>]) -> Vec<f32> {
        a[0].iter().zip(&b[0]).map(|(a, b)| a - b).collect()
    }

    /// A miner whose every inner step moves it by a known vector, with outer steps landing
    /// mid-window (even windows: after the next window's first step) or two windows late
    /// (odd windows: before the first step of the window after next): each upload is exactly
    /// its own window's steps, and between windows `L = C − Σ pending P`.
    #[test]
    fn every_step_is_sent_exactly_once_whenever_the_outer_steps_land() {
        let step = |w: u64, k: u64| [(2 * w + k) as f32 + 1.0, -((2 * w + k) as f32) * 0.5];
        let lands_before = |w: u64, k: u64| -> Vec<u64> {
            match k {
                1 => w
                    .checked_sub(1)
                    .filter(|v| v % 2 == 0)
                    .into_iter()
                    .collect(),
                _ => w
                    .checked_sub(2)
                    .filter(|v| v % 2 == 1)
                    .into_iter()
                    .collect(),
            }
        };
        let mut canon = v(&[10.0, 10.0]);
        let mut live = canon.clone();
        let mut carry: Option<Carry> = None;
        let mut sent: Vec<Vec<f32>> = Vec::new();
        for w in 0..6u64 {
            for k in 0..2 {
                for land in lands_before(w, k) {
                    // The network's step: the mean of our update and another miner's.
                    let c0 = canon.clone();
                    for i in 0..2 {
                        canon[0][i] -= 0.5 * (sent[land as usize][i] + 1.0);
                    }
                    carry.as_mut().unwrap().landed(land, &c0, &canon, &mut live);
                }
                let s = step(w, k);
                live[0][0] -= s[0];
                live[0][1] -= s[1];
            }
            let before = carry.as_ref().map_or(canon.clone(), |c| c.start.clone());
            sent.push(sub(&before, &live));
            carry = Carry::sent(carry, w, diff(&before, &live), live.clone());
            let c = carry.as_ref().unwrap();
            let mut expect = canon[0].clone();
            for (_, p) in &c.pending {
                for i in 0..2 {
                    expect[i] -= p[0][i];
                }
            }
            for i in 0..2 {
                assert!(
                    (expect[i] - live[0][i]).abs() < 1e-4,
                    "window {w}: {expect:?} vs {:?}",
                    live[0]
                );
            }
        }
        for (w, got) in sent.iter().enumerate() {
            let w = w as u64;
            let (a, b) = (step(w, 0), step(w, 1));
            for i in 0..2 {
                assert!(
                    (got[i] - (a[i] + b[i])).abs() < 1e-4,
                    "window {w}: sent {got:?}, trained {a:?} + {b:?}"
                );
            }
        }
    }

    #[test]
    fn too_many_windows_in_flight_drop_the_carry() {
        let mut c = None;
        for w in 0..Carry::MAX_PENDING as u64 {
            c = Carry::sent(c, w, v(&[0.5]), v(&[0.5]));
            assert!(c.is_some());
        }
        assert!(Carry::sent(c, 9, v(&[0.5]), v(&[0.5])).is_none());
    }

    #[test]
    fn a_landing_forgets_older_windows_too() {
        let mut c = Carry::sent(None, 3, v(&[1.0]), v(&[0.0])).unwrap();
        c = Carry::sent(Some(c), 4, v(&[1.0]), v(&[-1.0])).unwrap();
        let mut live = v(&[-1.0]);
        c.landed(4, &v(&[1.0]), &v(&[0.0]), &mut live);
        assert!(c.pending().is_empty(), "window 3 cannot land after 4");
        // Moved by (0 − 1) + P_4 (= 1): not at all.
        assert_eq!(live, v(&[-1.0]));
    }
}
