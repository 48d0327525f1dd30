//! Run parameters with the reference run's defaults (SPEC "(ref)" values).

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::Window;

/// OpenSkill (Weng–Lin) Plackett–Luce parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OpenSkillParams {
    /// Mean of a new player's rating.
    pub mu: f64,
    /// Standard deviation of a new player's rating.
    pub sigma: f64,
    /// Performance noise.
    pub beta: f64,
    /// Additive dynamics: σ² grows by τ² before every match, so ratings never freeze.
    pub tau: f64,
    /// Floor of the σ shrink factor (keeps σ > 0).
    pub kappa: f64,
}

impl Default for OpenSkillParams {
    fn default() -> Self {
        Self {
            mu: 25.0,
            sigma: 25.0 / 3.0,
            beta: 7.0,
            tau: 0.1,
            kappa: 1e-4,
        }
    }
}

/// Penalties, as fractions taken off the score (0.25 = the score is multiplied by 0.75).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Penalties {
    /// Per window in which a peer uploads nothing while nobody asked for its upload.
    pub inactive: f64,
    /// For an evaluated peer's upload that was missing, late or early: on the score and the
    /// BMA. (ref) 0.25 (× 0.75).
    pub missing: f64,
    /// For an aggregation primary's upload not delivered, the 1st, 2nd and 3rd-or-later time
    /// in a row. (ref) × 0.75, × 0.5, × 0.
    #[serde(default = "default_primary_missing")]
    pub primary_missing: [f64; 3],
    /// When fewer than this share of a window's primaries delivered, those that did not get
    /// × 0. (ref) 0.4.
    #[serde(default = "default_gather_success")]
    pub gather_success: f64,
    /// For a peer more than `out_of_sync_steps` outer steps away from the validator's model.
    pub out_of_sync: f64,
    /// Sync distance (in outer steps) above which the out-of-sync penalty applies.
    pub out_of_sync_steps: f64,
    /// For an upload that failed validation (signature, shapes, ranges, finiteness).
    pub invalid: f64,
    /// For the later uploader of a pair whose selected indices overlap by ≥ `copy_overlap`.
    pub copy: f64,
    /// Index-overlap fraction (of the smaller set) at which two uploads count as copies.
    pub copy_overlap: f64,
    /// This many negative evaluations in a row exclude a peer from aggregation (until a
    /// positive one).
    pub negative_streak: u32,
    /// So do more than half negative of the last this many judged windows (≤ 32). (ref) 8.
    #[serde(default = "default_negative_history")]
    pub negative_history: u32,
    /// After more than this many inactive windows in a row a peer's record starts afresh
    /// (the reference's `reset_peer`). (ref) 3.
    #[serde(default = "default_inactive_reset")]
    pub inactive_reset: u32,
    /// Windows in a row a peer's upload may be unreadable (a store failure) with its score
    /// kept; after that it decays like an inactive peer's. Not in the reference, which counts
    /// a store failure as a missing upload.
    #[serde(default = "default_unavailable_grace")]
    pub unavailable_grace: u32,
    /// An evaluated update whose norm is more than this many times the window's clip norm
    /// (median over tensors) is judged invalid. Honest peers train the same model with the
    /// same settings: their norms lie within a factor of about 2 of each other. Not in the
    /// reference, where a scaled update is clipped but still rated.
    #[serde(default = "default_outlier_norm")]
    pub outlier_norm: f64,
    /// A peer earns nothing while its strength is below this: the moving average of its loss
    /// scores, each relative to the best loss score the validator measured in that window
    /// (its rating still moves). Ratings only see ranks: without this, a flood of near-useless
    /// updates (noise whose step happens to lower the loss a little) rises by beating each
    /// other. Not in the reference.
    #[serde(default = "default_weak_update")]
    pub weak_update: f64,
    /// Weight of the old strength in that moving average (a new peer's strength is 0). One
    /// window alone does not decide: late in training an honest peer's loss score is small
    /// beside the measurement's noise and can be a tenth of the best in one window.
    #[serde(default = "default_weak_update_decay")]
    pub weak_update_decay: f64,
}

fn default_primary_missing() -> [f64; 3] {
    [0.25, 0.5, 1.0]
}

fn default_gather_success() -> f64 {
    0.4
}

fn default_negative_history() -> u32 {
    8
}

fn default_inactive_reset() -> u32 {
    3
}

fn default_unavailable_grace() -> u32 {
    2
}

fn default_outlier_norm() -> f64 {
    8.0
}

fn default_eval_incumbents() -> usize {
    2
}

fn default_own_data_effect() -> f64 {
    2.0
}

fn default_own_data_margin() -> f64 {
    2.0
}

fn default_own_data_from_window() -> u64 {
    6
}

fn default_eval_spares() -> usize {
    64
}

fn default_eval_challengers() -> usize {
    8
}

fn default_screen_sequences() -> usize {
    4
}

fn default_weak_update() -> f64 {
    0.25
}

fn default_weak_update_decay() -> f64 {
    0.6
}

impl Default for Penalties {
    fn default() -> Self {
        Self {
            inactive: 0.25,
            missing: 0.25,
            primary_missing: default_primary_missing(),
            gather_success: default_gather_success(),
            out_of_sync: 0.25,
            out_of_sync_steps: 2.0,
            invalid: 1.0,
            copy: 1.0,
            copy_overlap: 0.40,
            negative_streak: 3,
            negative_history: default_negative_history(),
            inactive_reset: default_inactive_reset(),
            unavailable_grace: default_unavailable_grace(),
            outlier_norm: default_outlier_norm(),
            weak_update: default_weak_update(),
            weak_update_decay: default_weak_update_decay(),
        }
    }
}

/// Outer learning-rate schedule: linear from `start` to `end` over `decay_windows` windows,
/// then constant. (ref) 1.0 → 0.4.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OuterLr {
    pub start: f64,
    pub end: f64,
    pub decay_windows: u64,
}

impl Default for OuterLr {
    fn default() -> Self {
        Self {
            start: 1.0,
            end: 0.4,
            decay_windows: 3000,
        }
    }
}

impl OuterLr {
    /// α for window `w`, counted from the run's first window (0).
    pub fn at(&self, w: Window) -> f64 {
        if self.decay_windows == 0 || w >= self.decay_windows {
            return self.end;
        }
        let t = w as f64 / self.decay_windows as f64;
        self.start + (self.end - self.start) * t
    }
}

/// How rewards are split (SPEC §5, "Weights").
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WeightParams {
    /// Share of the top `aggregation_size` peers.
    pub top_share: f64,
    /// Ratio between rank 1's and rank G's weight in the linear profile.
    pub top_ratio: f64,
    /// Share of the reserves.
    pub reserve_share: f64,
    /// Geometric decay of reserve weights (reserve i gets ∝ decay^i).
    pub reserve_decay: f64,
    /// Fraction burned (sent to the burn uid) before the split; an operator option, 0 by default.
    pub burn: f64,
}

impl Default for WeightParams {
    fn default() -> Self {
        Self {
            top_share: 0.75,
            top_ratio: 2.0,
            reserve_share: 0.25,
            reserve_decay: 0.5,
            burn: 0.0,
        }
    }
}

/// Everything the protocol needs to agree on. `Default` is the reference run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunParams {
    /// Blocks per window. (ref) 115.
    pub blocks_per_window: u64,
    /// Milliseconds per block. (ref) 12 000.
    pub block_time_ms: u64,
    /// Wall-clock time (ms since the Unix epoch) of block 0.
    pub genesis_ms: u64,
    /// Upload grace period after the start of window w+1, ms. (ref) 70 000.
    pub grace_ms: u64,
    /// Inner optimizer steps per window, H. (ref) 30.
    pub inner_steps: u32,
    /// Windows after a (re)join in which a miner does not train and uploads a zero update.
    pub null_windows: u32,
    /// G: peers aggregated per window and paid from the top share. (ref) 20.
    pub aggregation_size: usize,
    /// Reserves: the next peers by weight, who replace missing ones and share the reserve share.
    pub reserves: usize,
    /// Peers one validator evaluates fully per window, at least (when it has that many to
    /// score); a validator goes on with more while its window's evaluation time lasts
    /// (`NodeConfig::eval_deadline`). (ref) 20.
    pub uids_per_window: usize,
    /// Of the `uids_per_window` (at most all of them), up to this many go to the aggregation
    /// set's primaries with an upload, highest weight first: every window's match holds the
    /// peers the network trains on, the bar for `penalties.weak_update`, however many
    /// newcomers flood the rest. Not in the reference.
    #[serde(default = "default_eval_incumbents")]
    pub eval_incumbents: usize,
    /// Challengers a validator looks at (downloads and screens) beyond its `uids_per_window`,
    /// in look-at order: junk uploads (zero, invalid, gone, copied) cost a download, not a
    /// slot, and the best screened of many newcomers are evaluated first. Not in the
    /// reference (which plans its evaluations before downloading).
    #[serde(default = "default_eval_spares")]
    pub eval_spares: usize,
    /// Of the `uids_per_window`, at least this many (when there are that many) go to
    /// challengers, peers outside the aggregation set, best screened first: newcomers get in
    /// however many incumbents there are to check. Not in the reference (docs/SCALING.md).
    #[serde(default = "default_eval_challengers")]
    pub eval_challengers: usize,
    /// Sequences of the validator's random pool on which every upload it looks at is screened
    /// before the full evaluations (the loss score of the update applied alone; 0: no screen).
    /// Screens order the full evaluations: challengers best first, incumbents worst first.
    /// Not in the reference (docs/SCALING.md).
    #[serde(default = "default_screen_sequences")]
    pub screen_sequences: usize,
    /// Sequences of the random pool per loss measurement. (ref) 8.
    pub eval_sequences: usize,
    /// Scale of a peer's update when the validator tries it alone: α × this. (ref) 0.2.
    pub eval_lr_factor: f64,
    /// Outer learning rate α.
    pub outer_lr: OuterLr,
    /// Error-feedback decay β (used by the codec; carried here so all agree). (ref) 0.95.
    pub error_feedback_beta: f64,
    /// Decay of the binary moving average of the own-vs-random indicator. (ref) 0.95.
    pub bma_decay: f64,
    /// Evaluations before the BMA threshold applies. (ref) 10.
    pub bma_warmup: u32,
    /// After warm-up a BMA below this counts as 0. (ref) 0.10.
    pub bma_threshold: f64,
    /// Sync distance (outer steps) at which the sync score reaches 0. 3.
    pub sync_max_steps: f64,
    /// Exponent of the sync score. 2.5.
    pub sync_exponent: f64,
    /// Windows of the validator's own fingerprints averaged for the per-step change. 5.
    pub sync_history: usize,
    /// Score a missing or invalid upload enters the rating match with. −99.
    pub missing_match_score: f64,
    /// Add a fixed, unrated reference player with loss score 0 (an update that changes nothing)
    /// to every match, so ratings measure improvement over doing nothing: a lone honest peer
    /// still rises, and free-riders cannot rise by beating each other. Not in the reference.
    pub rating_baseline: bool,
    /// Multiply the score by the own-vs-random BMA (SPEC §5: proof a peer trained on its
    /// assigned data). On in the reference; a network whose model is too small for the check to
    /// separate honest peers (docs/NODES.md) can switch it off: the BMA is still tracked and
    /// reported, but not applied.
    #[serde(default = "yes")]
    pub own_data_check: bool,
    /// The own-data check's δ: the mean [`crate::scoring::own_data_z`] of an update trained on
    /// its own data, as the check assumes it (`OwnDataEvidence`). Not in the reference.
    #[serde(default = "default_own_data_effect")]
    pub own_data_effect: f64,
    /// The own-data check applies to evaluations from this window on. While the model is
    /// young an update's gain is mostly generic and the evidence weak (`tiny`, H = 30: an
    /// honest miner's z 0.5–1.7 in windows 1–4, some still below 1 in window 5, 3–6 later;
    /// docs/NODES.md). Not in the
    /// reference, whose BMA waits 10 evaluations of each peer instead.
    #[serde(default = "default_own_data_from_window")]
    pub own_data_from_window: u64,
    /// How far the own-data evidence must favour a peer's own data for it to earn
    /// (`OwnDataEvidence::favours_own`). With δ 2 the default 2 asks a newcomer's first judged
    /// evaluation for z ≥ 2: an update on other data passes it about 2 % of the time, an honest
    /// `tiny` miner's z was 3.1–6 there at 32 sequences (docs/NODES.md). Not in the reference.
    #[serde(default = "default_own_data_margin")]
    pub own_data_margin: f64,
    pub openskill: OpenSkillParams,
    pub penalties: Penalties,
    pub weights: WeightParams,
}

impl Default for RunParams {
    fn default() -> Self {
        Self::reference()
    }
}

impl RunParams {
    /// The reference run (Covenant-72B).
    pub fn reference() -> Self {
        Self {
            blocks_per_window: 115,
            block_time_ms: 12_000,
            genesis_ms: 0,
            grace_ms: 70_000,
            inner_steps: 30,
            null_windows: 1,
            aggregation_size: 20,
            reserves: 10,
            uids_per_window: 20,
            eval_incumbents: default_eval_incumbents(),
            eval_spares: default_eval_spares(),
            eval_challengers: default_eval_challengers(),
            screen_sequences: default_screen_sequences(),
            eval_sequences: 8,
            eval_lr_factor: 0.2,
            outer_lr: OuterLr::default(),
            error_feedback_beta: 0.95,
            bma_decay: 0.95,
            bma_warmup: 10,
            bma_threshold: 0.10,
            sync_max_steps: 3.0,
            sync_exponent: 2.5,
            sync_history: 5,
            missing_match_score: -99.0,
            rating_baseline: true,
            own_data_check: true,
            own_data_effect: default_own_data_effect(),
            own_data_margin: default_own_data_margin(),
            own_data_from_window: default_own_data_from_window(),
            openskill: OpenSkillParams::default(),
            penalties: Penalties::default(),
            weights: WeightParams::default(),
        }
    }

    /// A local network: 1 s blocks, 20-block windows, 5 s grace, few inner steps.
    pub fn local() -> Self {
        Self {
            blocks_per_window: 20,
            block_time_ms: 1_000,
            grace_ms: 5_000,
            inner_steps: 10,
            ..Self::reference()
        }
    }

    /// Window length in ms.
    pub fn window_ms(&self) -> u64 {
        self.schedule().window_ms()
    }

    /// Checks every field; call once on parameters read from outside.
    pub fn validate(&self) -> Result<()> {
        fn bad(field: &'static str, reason: impl Into<String>) -> Result<()> {
            Err(CoreError::InvalidParams {
                field,
                reason: reason.into(),
            })
        }
        fn frac(field: &'static str, v: f64) -> Result<()> {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, format!("{v} is not in [0, 1]"));
            }
            Ok(())
        }
        if self.blocks_per_window == 0 {
            return bad("blocks_per_window", "must be > 0");
        }
        if self.block_time_ms == 0 {
            return bad("block_time_ms", "must be > 0");
        }
        if self.grace_ms >= self.window_ms() {
            return bad(
                "grace_ms",
                format!(
                    "{} must be shorter than a window ({} ms)",
                    self.grace_ms,
                    self.window_ms()
                ),
            );
        }
        if self.aggregation_size == 0 {
            return bad("aggregation_size", "must be > 0");
        }
        if self.screen_sequences > self.eval_sequences {
            return bad(
                "screen_sequences",
                format!(
                    "{} is more than eval_sequences ({})",
                    self.screen_sequences, self.eval_sequences
                ),
            );
        }
        frac("penalties.weak_update", self.penalties.weak_update)?;
        frac(
            "penalties.weak_update_decay",
            self.penalties.weak_update_decay,
        )?;
        if !(self.penalties.outlier_norm.is_finite() && self.penalties.outlier_norm >= 1.0) {
            return bad("penalties.outlier_norm", "must be finite and at least 1");
        }
        if self.sync_history == 0 {
            return bad("sync_history", "must be > 0");
        }
        if self.sync_max_steps.is_nan()
            || self.sync_max_steps <= 0.0
            || !self.sync_exponent.is_finite()
            || self.sync_exponent <= 0.0
        {
            return bad(
                "sync_max_steps/sync_exponent",
                "must be positive and finite",
            );
        }
        if !(2..=1024).contains(&self.eval_sequences) {
            return bad(
                "eval_sequences",
                format!("{} is not in 2..=1024", self.eval_sequences),
            );
        }
        if !(self.own_data_effect > 0.0 && self.own_data_effect <= crate::scoring::MAX_OWN_Z) {
            return bad(
                "own_data_effect",
                format!(
                    "{} is not in (0, {}]",
                    self.own_data_effect,
                    crate::scoring::MAX_OWN_Z
                ),
            );
        }
        if !(0.0..crate::scoring::OWN_DATA_LLR_CAP).contains(&self.own_data_margin) {
            return bad(
                "own_data_margin",
                format!("must be in [0, {})", crate::scoring::OWN_DATA_LLR_CAP),
            );
        }
        frac("bma_decay", self.bma_decay)?;
        frac("bma_threshold", self.bma_threshold)?;
        frac("error_feedback_beta", self.error_feedback_beta)?;
        let p = &self.penalties;
        frac("penalties.inactive", p.inactive)?;
        frac("penalties.missing", p.missing)?;
        frac("penalties.gather_success", p.gather_success)?;
        for m in p.primary_missing {
            frac("penalties.primary_missing", m)?;
        }
        if !(1..=32).contains(&p.negative_history) {
            return bad("penalties.negative_history", "must be in 1..=32");
        }
        frac("penalties.out_of_sync", p.out_of_sync)?;
        frac("penalties.invalid", p.invalid)?;
        frac("penalties.copy", p.copy)?;
        frac("penalties.copy_overlap", p.copy_overlap)?;
        let w = &self.weights;
        frac("weights.top_share", w.top_share)?;
        frac("weights.reserve_share", w.reserve_share)?;
        frac("weights.burn", w.burn)?;
        frac("weights.reserve_decay", w.reserve_decay)?;
        if (w.top_share + w.reserve_share - 1.0).abs() > 1e-9 {
            return bad("weights", "top_share + reserve_share must be 1");
        }
        if w.top_ratio.is_nan() || w.top_ratio < 1.0 {
            return bad("weights.top_ratio", "must be ≥ 1");
        }
        let o = &self.openskill;
        if !(o.sigma > 0.0 && o.beta > 0.0 && o.tau >= 0.0 && o.kappa > 0.0 && o.mu.is_finite()) {
            return bad("openskill", "σ, β, κ must be > 0, τ ≥ 0, μ finite");
        }
        for (f, v) in [
            ("outer_lr.start", self.outer_lr.start),
            ("outer_lr.end", self.outer_lr.end),
            ("eval_lr_factor", self.eval_lr_factor),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(f, format!("{v} must be finite and ≥ 0"));
            }
        }
        Ok(())
    }
}

fn yes() -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_defaults_are_valid_and_match_spec() {
        let p = RunParams::reference();
        p.validate().unwrap();
        assert_eq!(p.window_ms(), 115 * 12_000);
        assert_eq!(
            (p.aggregation_size, p.reserves, p.uids_per_window),
            (20, 10, 20)
        );
        assert_eq!(p.openskill.beta, 7.0);
        RunParams::local().validate().unwrap();
    }

    #[test]
    fn validate_rejects_bad_fields() {
        let mut p = RunParams::reference();
        p.blocks_per_window = 0;
        assert!(matches!(
            p.validate(),
            Err(CoreError::InvalidParams {
                field: "blocks_per_window",
                ..
            })
        ));
        let mut p = RunParams::reference();
        p.grace_ms = p.window_ms();
        assert!(matches!(
            p.validate(),
            Err(CoreError::InvalidParams {
                field: "grace_ms",
                ..
            })
        ));
        let mut p = RunParams::reference();
        p.weights.top_share = 0.5;
        assert!(p.validate().is_err());
        let mut p = RunParams::reference();
        p.penalties.missing = 1.5;
        assert!(p.validate().is_err());
        let mut p = RunParams::reference();
        p.outer_lr.start = f64::NAN;
        assert!(p.validate().is_err());
    }

    #[test]
    fn outer_lr_is_linear_then_flat() {
        let s = OuterLr {
            start: 1.0,
            end: 0.4,
            decay_windows: 100,
        };
        assert_eq!(s.at(0), 1.0);
        assert!((s.at(50) - 0.7).abs() < 1e-12);
        assert_eq!(s.at(100), 0.4);
        assert_eq!(s.at(10_000), 0.4);
        let c = OuterLr {
            start: 1.0,
            end: 0.5,
            decay_windows: 0,
        };
        assert_eq!(c.at(0), 0.5);
    }
}
