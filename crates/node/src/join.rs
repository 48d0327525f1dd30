//! Joining at any window (SPEC §6): start from the newest verified checkpoint (or the run's
//! seeded initial model), replay the validators' records of every window since (each checked
//! against the published model hash), and pick the first window this node follows itself.

use anyhow::{bail, Result};
use covenant_model::Trainer;

use crate::canon::Canon;
use crate::checkpoint;
use crate::runtime::Ctx;

pub struct Joined {
    pub canon: Canon,
    /// Last window whose outer step is in `canon` (`None`: the initial model).
    pub applied: Option<u64>,
    /// First window this node handles: it gathers `start − 1` itself.
    pub start: u64,
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
    let window_ms = ctx.params.window_ms();
    let give_up = Ctx::now_ms() + 4 * window_ms;
    loop {
        applied = ctx.replay_records(&mut canon, applied)?;
        let now = Ctx::now_ms();
        // The first window that starts in the future (0 before genesis).
        let start = if now < ctx.params.window_start_ms(0) {
            0
        } else {
            ctx.params.window_of_time(now) + 1
        };
        let next = applied.map(|a| a + 1).unwrap_or(0);
        if next + 1 >= start {
            trainer.set_params(&canon.views())?;
            let replayed = match (first, applied) {
                (_, None) => 0,
                (None, Some(a)) => a + 1,
                (Some(f), Some(a)) => a - f,
            };
            return Ok(Joined { canon, applied, start, from_checkpoint, replayed });
        }
        if now > give_up {
            bail!(
                "cannot catch up: the model is known up to window {:?} but the run is at window {}; \
                 no validator has published records for the windows between",
                applied,
                start - 1
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
