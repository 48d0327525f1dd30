//! Window arithmetic and upload acceptance (SPEC §4).
//!
//! `window = floor(block / blocks_per_window)`. Times are milliseconds since the Unix epoch on
//! the chain's clock: block `b` starts at `genesis_ms + b × block_time_ms`. A window-`w` upload is
//! accepted only if the store's own timestamp lies in `[start(w+1), start(w+1) + grace]`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::params::RunParams;
use crate::{Block, Millis, Uid, Window};

/// Where an upload's store timestamp lies relative to its acceptance interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadTiming {
    /// Inside `[start(w+1), start(w+1) + grace]`: used.
    OnTime,
    /// Before `start(w+1)`, by this many ms: skipped (cannot have finished window w honestly;
    /// most likely a clock or replay problem).
    Early { by_ms: u64 },
    /// After the grace period, by this many ms: skipped (it may have copied others).
    Late { by_ms: u64 },
    /// No object was found.
    Missing,
}

impl UploadTiming {
    pub fn accepted(self) -> bool {
        self == UploadTiming::OnTime
    }
}

/// The chain's clock: block heights, windows and their wall-clock times. The one home of the
/// window arithmetic: the run parameters, the chain ledger and the nodes all use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Wall-clock time (ms since the Unix epoch) of block 0.
    pub genesis_ms: Millis,
    /// Milliseconds per block.
    pub block_time_ms: u64,
    /// Blocks per window.
    pub blocks_per_window: u64,
}

impl Schedule {
    /// The window a block belongs to.
    pub fn window_of_block(&self, block: Block) -> Window {
        block / self.blocks_per_window.max(1)
    }

    /// First block of window `w`.
    pub fn window_start_block(&self, w: Window) -> Block {
        w.saturating_mul(self.blocks_per_window)
    }

    /// One past the last block of window `w` (= first block of `w + 1`).
    pub fn window_end_block(&self, w: Window) -> Block {
        w.saturating_add(1).saturating_mul(self.blocks_per_window)
    }

    /// Wall-clock start of block `b`.
    pub fn block_start_ms(&self, b: Block) -> Millis {
        self.genesis_ms
            .saturating_add(b.saturating_mul(self.block_time_ms))
    }

    /// Wall-clock start of window `w`.
    pub fn window_start_ms(&self, w: Window) -> Millis {
        self.block_start_ms(self.window_start_block(w))
    }

    /// Window length in ms.
    pub fn window_ms(&self) -> u64 {
        self.blocks_per_window.saturating_mul(self.block_time_ms)
    }

    /// The block a wall-clock time falls in (times before genesis are block 0).
    pub fn block_of_time(&self, t: Millis) -> Block {
        t.saturating_sub(self.genesis_ms) / self.block_time_ms.max(1)
    }

    /// The window a wall-clock time falls in (times before genesis are window 0).
    pub fn window_of_time(&self, t: Millis) -> Window {
        self.window_of_block(self.block_of_time(t))
    }
}

impl RunParams {
    /// The chain's clock as these parameters set it.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            genesis_ms: self.genesis_ms,
            block_time_ms: self.block_time_ms,
            blocks_per_window: self.blocks_per_window,
        }
    }

    /// The window a block belongs to.
    pub fn window_of_block(&self, block: Block) -> Window {
        self.schedule().window_of_block(block)
    }

    /// First block of window `w`.
    pub fn window_start_block(&self, w: Window) -> Block {
        self.schedule().window_start_block(w)
    }

    /// One past the last block of window `w` (= first block of `w + 1`).
    pub fn window_end_block(&self, w: Window) -> Block {
        self.schedule().window_end_block(w)
    }

    /// Wall-clock start of block `b`.
    pub fn block_start_ms(&self, b: Block) -> Millis {
        self.schedule().block_start_ms(b)
    }

    /// Wall-clock start of window `w`.
    pub fn window_start_ms(&self, w: Window) -> Millis {
        self.schedule().window_start_ms(w)
    }

    /// The window a wall-clock time falls in (times before genesis are window 0).
    pub fn window_of_time(&self, t: Millis) -> Window {
        self.schedule().window_of_time(t)
    }

    /// The block a wall-clock time falls in.
    pub fn block_of_time(&self, t: Millis) -> Block {
        self.schedule().block_of_time(t)
    }

    /// Acceptance interval `[open, close]` (both inclusive) of window `w`'s uploads.
    pub fn upload_interval(&self, w: Window) -> (Millis, Millis) {
        let open = self.window_start_ms(w.saturating_add(1));
        (open, open.saturating_add(self.grace_ms))
    }

    /// When window `w`'s inner steps must be over: at the window's end, where its upload
    /// interval opens, so that compressing and putting the upload have the grace period; earlier
    /// if compressing (as long as `compress_ms`) would otherwise end after the interval closes.
    /// A miner starts no inner step it expects to end after this time.
    pub fn inner_deadline(&self, w: Window, compress_ms: u64) -> Millis {
        let (open, close) = self.upload_interval(w);
        open.min(close.saturating_sub(compress_ms))
    }

    /// When gathering window `w` can start: the end of its grace period, after which the set of
    /// accepted uploads can no longer change.
    pub fn gather_time(&self, w: Window) -> Millis {
        self.upload_interval(w).1
    }

    /// Classifies a window-`w` upload by the object store's timestamp (`None`: not found).
    pub fn classify_upload(&self, w: Window, store_time: Option<Millis>) -> UploadTiming {
        let Some(t) = store_time else {
            return UploadTiming::Missing;
        };
        let (open, close) = self.upload_interval(w);
        if t < open {
            UploadTiming::Early { by_ms: open - t }
        } else if t > close {
            UploadTiming::Late { by_ms: t - close }
        } else {
            UploadTiming::OnTime
        }
    }

    /// The registered peers whose window-`w` upload (store timestamps in `uploads`) is on time.
    pub fn accepted_uploads(
        &self,
        w: Window,
        registered: &BTreeSet<Uid>,
        uploads: &BTreeMap<Uid, Millis>,
    ) -> BTreeSet<Uid> {
        uploads
            .iter()
            .filter(|(u, &t)| registered.contains(u) && self.classify_upload(w, Some(t)).accepted())
            .map(|(&u, _)| u)
            .collect()
    }

    /// Whether window `w` is a null window for a peer that (re)joined at window `joined`.
    pub fn is_null_window(&self, joined: Window, w: Window) -> bool {
        w >= joined && w < joined.saturating_add(self.null_windows as u64)
    }

    /// The run-wide index of inner step `step` of window `w`, `w × H + step`: where the inner
    /// learning-rate schedule stands, the same for every miner however late it joined (the
    /// reference replays its scheduler to the global step on a join).
    pub fn inner_step_index(&self, w: Window, step: u32) -> u64 {
        w.saturating_mul(u64::from(self.inner_steps))
            .saturating_add(u64::from(step))
    }

    /// Outer learning rate α of window `w`.
    pub fn outer_lr_at(&self, w: Window) -> f64 {
        self.outer_lr.at(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> RunParams {
        RunParams {
            genesis_ms: 1_000_000,
            ..RunParams::reference()
        }
    }

    #[test]
    fn blocks_map_to_windows() {
        let p = p();
        assert_eq!(p.window_of_block(0), 0);
        assert_eq!(p.window_of_block(114), 0);
        assert_eq!(p.window_of_block(115), 1);
        assert_eq!(p.window_start_block(3), 345);
        assert_eq!(p.window_end_block(3), 460);
        assert_eq!(p.window_of_block(p.window_end_block(3) - 1), 3);
        assert_eq!(p.window_of_block(u64::MAX), u64::MAX / 115);
    }

    #[test]
    fn times_map_to_windows() {
        let p = p();
        assert_eq!(p.window_start_ms(0), 1_000_000);
        assert_eq!(p.window_start_ms(2), 1_000_000 + 2 * 1_380_000);
        assert_eq!(p.window_of_time(p.window_start_ms(5)), 5);
        assert_eq!(p.window_of_time(p.window_start_ms(5) - 1), 4);
        assert_eq!(p.window_of_time(0), 0, "before genesis");
        assert_eq!(p.block_of_time(p.block_start_ms(77) + 11_999), 77);
    }

    #[test]
    fn upload_acceptance_boundaries() {
        let p = p();
        let (open, close) = p.upload_interval(4);
        assert_eq!(open, p.window_start_ms(5));
        assert_eq!(close, open + 70_000);
        assert_eq!(p.classify_upload(4, Some(open)), UploadTiming::OnTime);
        assert_eq!(p.classify_upload(4, Some(close)), UploadTiming::OnTime);
        assert_eq!(
            p.classify_upload(4, Some(open - 1)),
            UploadTiming::Early { by_ms: 1 }
        );
        assert_eq!(
            p.classify_upload(4, Some(close + 5)),
            UploadTiming::Late { by_ms: 5 }
        );
        assert_eq!(p.classify_upload(4, None), UploadTiming::Missing);
        assert!(!UploadTiming::Late { by_ms: 1 }.accepted());
        assert_eq!(p.gather_time(4), close);
    }

    #[test]
    fn inner_steps_end_at_the_window_end_or_in_time_to_compress() {
        let p = p();
        let (open, close) = p.upload_interval(4);
        assert_eq!(p.inner_deadline(4, 0), open);
        assert_eq!(
            p.inner_deadline(4, 60_000),
            open,
            "compressing fits the grace"
        );
        assert_eq!(p.inner_deadline(4, 100_000), close - 100_000);
        assert_eq!(p.inner_deadline(0, u64::MAX), 0);
    }

    #[test]
    fn null_windows_follow_join() {
        let mut p = p();
        p.null_windows = 2;
        assert!(!p.is_null_window(10, 9));
        assert!(p.is_null_window(10, 10));
        assert!(p.is_null_window(10, 11));
        assert!(!p.is_null_window(10, 12));
        p.null_windows = 0;
        assert!(!p.is_null_window(10, 10));
    }
}
