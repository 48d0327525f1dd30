//! Inner optimizer settings and the learning-rate schedule.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// AdamW with linear warm-up, cosine decay and global grad-norm clipping.
///
/// `Default` is SPEC §2 except the peak learning rate: 3e-4 suits the small CPU presets;
/// [`OptimConfig::reference`] gives the reference run's 1.17e-4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradient; 0 disables clipping.
    pub grad_clip: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
    /// The cosine ends at `min_lr_ratio × lr`.
    pub min_lr_ratio: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
            warmup_steps: 100,
            total_steps: 10_000,
            min_lr_ratio: 0.1,
        }
    }
}

impl OptimConfig {
    /// The reference run's inner optimizer (SPEC §2): peak lr 1.17e-4.
    pub fn reference() -> Self {
        OptimConfig {
            lr: 1.17e-4,
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(ModelError::InvalidOptim(m));
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("lr ({}) must be finite and > 0", self.lr));
        }
        for (n, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return bad(format!("{n} ({b}) must be in [0, 1)"));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad(format!("eps ({}) must be finite and > 0", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!(
                "weight_decay ({}) must be finite and >= 0",
                self.weight_decay
            ));
        }
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return bad(format!(
                "grad_clip ({}) must be finite and >= 0",
                self.grad_clip
            ));
        }
        if self.total_steps == 0 {
            return bad("total_steps must be > 0".into());
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return bad(format!(
                "min_lr_ratio ({}) must be in [0, 1]",
                self.min_lr_ratio
            ));
        }
        Ok(())
    }

    /// Learning rate for the step with 0-based index `step`: `lr·(step+1)/warmup` during warm-up,
    /// then a cosine from `lr` down to `min_lr_ratio·lr` at `total_steps`, flat afterwards.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let min = self.lr * self.min_lr_ratio;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        let progress = ((step - self.warmup_steps) as f64 / span as f64).min(1.0);
        min + (self.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let o = OptimConfig {
            lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            ..Default::default()
        };
        assert!((o.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((o.lr_at(9) - 1.0).abs() < 1e-12);
        assert!((o.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((o.lr_at(60) - 0.55).abs() < 1e-12); // half-way down the cosine
        assert!((o.lr_at(110) - 0.1).abs() < 1e-12);
        assert!((o.lr_at(10_000) - 0.1).abs() < 1e-12);
        let mut prev = f64::INFINITY;
        for s in 10..=110 {
            assert!(o.lr_at(s) <= prev);
            prev = o.lr_at(s);
        }
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(OptimConfig::default().validate().is_ok());
        assert!(OptimConfig {
            lr: -1.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(OptimConfig {
            beta2: 1.0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(OptimConfig {
            total_steps: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(OptimConfig {
            grad_clip: f64::NAN,
            ..Default::default()
        }
        .validate()
        .is_err());
    }
}
