//! Joining at any window (SPEC §6): start from the newest verified checkpoint (or the run's
//! seeded initial model), bring it forward through every window since (validators' records,
//! each checked against the published model hash, or a recomputation where none exists), and
//! pick the first window this node follows itself.

use anyhow::{bail, Result};
use covenant_model::Trainer;

use crate::canon::Canon;
use crate::checkpoint;
use crate::runtime::Ctx;

pub struct Joined {
    pub canon: Canon,
    /// Last window whose outer step is in `canon` (`None`: the initial model).
    pub applied: Option<u64>,
    /// First window this node handles.
    pub start: u64,
    /// A window the node must gather itself at `start` (`start − 1`), if any.
    pub expect: Option<u64>,
    pub from_checkpoint: Option<u64>,
    pub replayed: u64,
}

/// `trainer` must be freshly created from the run's seed (its parameters are the initial model).
pub fn join(ctx: &Ctx, trainer: &mut Trainer) -> Result<Joined> {
    let initial = Canon::from_views(ctx.layout.clone(), trainer.try_params()?)?;
    let (mut canon, mut applied, from_checkpoint) = match checkpoint::newest(ctx)? {
        Some((w, c)) => (c, Some(w), Some(w)),
        None => (initial, None, None),
    };
    let first = applied;
    let p = &ctx.params;
    let margin = p.window_ms() / 4;
    let give_up = Ctx::now_ms() + 4 * p.window_ms();
    loop {
        applied = ctx.catch_up(&mut canon, applied, None)?;
        let next = applied.map(|a| a + 1).unwrap_or(0);
        let now = Ctx::now_ms();
        let (start, expect) = if now < p.window_start_ms(next) + margin {
            // Follow from `next`: every earlier window is applied.
            (next, None)
        } else if now < p.window_start_ms(next + 1) + margin {
            // Follow from `next + 1`, gathering `next` at its end of grace like everyone.
            (next + 1, Some(next))
        } else {
            if now > give_up {
                bail!("cannot catch up: the model is at window {applied:?} and window {next} cannot be replayed");
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
            continue;
        };
        trainer.set_params(&canon.views())?;
        let replayed = match (first, applied) {
            (_, None) => 0,
            (None, Some(a)) => a + 1,
            (Some(f), Some(a)) => a - f,
        };
        return Ok(Joined {
            canon,
            applied,
            start,
            expect,
            from_checkpoint,
            replayed,
        });
    }
}
