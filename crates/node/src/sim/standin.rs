//! A deterministic stand-in for the model where its loss does not matter: flat buffers, no
//! tch, microseconds a step. It is a real (quadratic) learning problem, so that the protocol's
//! measurements mean what they mean with the real model: sample `i` concerns its own random
//! subset `S_i` of the coordinates, and its loss is half the mean squared distance of those
//! coordinates to a shared target. Training on a pool moves its samples' coordinates towards the
//! target, so an honest update lowers the loss of random samples and more that of the peer's
//! own, two peers' updates select different coordinates (nobody looks like a copier), and
//! noise, a flipped sign or a 100× update raise the loss.

use covenant_core::rng::{derive_seed, SplitMix64};
use covenant_data::Split;

use crate::env::{InnerStep, SparseValues, Trainer, TrainerError};

/// Tensors of the stand-in model (names as a tiny LLaMA's, shapes small).
const SHAPES: [(&str, [usize; 2]); 3] = [
    ("model.layers.0.mlp.up_proj.weight", [64, 128]),
    ("model.layers.0.mlp.down_proj.weight", [128, 64]),
    ("model.norm.weight", [1, 64]),
];
/// Inner learning rate (plain gradient descent on the batch's mean loss), the same at every
/// step of the schedule.
const LR: f32 = 0.5;
/// Coordinates per tensor that one sample concerns.
const SAMPLE_COORDS: usize = 64;

/// See the module docs.
pub struct Standin {
    seed: u64,
    theta: Vec<Vec<f32>>,
    target: Vec<Vec<f32>>,
    train: u64,
    val: u64,
}

impl Standin {
    /// The initial model of run `seed` (the same for every node of the run).
    pub fn new(seed: u64, train_samples: u64, val_samples: u64) -> Self {
        let mut init = SplitMix64::new(derive_seed(seed, &[0x57A1]));
        let mut goal = SplitMix64::new(derive_seed(seed, &[0x57A2]));
        let theta = SHAPES
            .iter()
            .map(|(_, s)| {
                (0..s[0] * s[1])
                    .map(|_| 0.1 * init.normal() as f32)
                    .collect()
            })
            .collect();
        let target = SHAPES
            .iter()
            .map(|(_, s)| (0..s[0] * s[1]).map(|_| goal.normal() as f32).collect())
            .collect();
        Standin {
            seed,
            theta,
            target,
            train: train_samples,
            val: val_samples,
        }
    }

    /// The coordinates sample `id` concerns: (tensor, index).
    fn subset(&self, split: Split, id: u64) -> Vec<(usize, usize)> {
        let tag = match split {
            Split::Train => 0,
            Split::Val => 1,
        };
        let mut r = SplitMix64::new(derive_seed(self.seed, &[0x57A3, tag, id]));
        let mut out = Vec::with_capacity(SAMPLE_COORDS * self.theta.len());
        for (t, v) in self.theta.iter().enumerate() {
            let n = SAMPLE_COORDS.min(v.len());
            for _ in 0..n {
                out.push((t, r.below(v.len() as u64) as usize));
            }
        }
        out
    }

    /// Mean over the samples of half the mean squared distance of their coordinates to the
    /// target.
    fn loss(&self, split: Split, ids: &[u64]) -> f64 {
        let mut total = 0.0;
        for &id in ids {
            let s = self.subset(split, id);
            let sq: f64 = s
                .iter()
                .map(|&(t, i)| f64::from(self.theta[t][i] - self.target[t][i]).powi(2))
                .sum();
            total += 0.5 * sq / s.len().max(1) as f64;
        }
        total / ids.len().max(1) as f64
    }
}

impl Trainer for Standin {
    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        SHAPES
            .iter()
            .map(|(n, s)| {
                let shape = if s[0] == 1 { vec![s[1]] } else { s.to_vec() };
                (n.to_string(), shape)
            })
            .collect()
    }

    fn samples(&self, split: Split) -> u64 {
        match split {
            Split::Train => self.train,
            Split::Val => self.val,
        }
    }

    fn params(&self) -> Result<Vec<Vec<f32>>, TrainerError> {
        Ok(self.theta.clone())
    }

    fn set_params(&mut self, theta: &[Vec<f32>]) -> Result<(), TrainerError> {
        if theta.len() != self.theta.len()
            || theta
                .iter()
                .zip(&self.theta)
                .any(|(a, b)| a.len() != b.len())
        {
            return Err(TrainerError::Shape("not the stand-in's shapes".into()));
        }
        if theta.iter().flatten().any(|x| !x.is_finite()) {
            return Err(TrainerError::NonFinite { what: "parameters" });
        }
        self.theta = theta.to_vec();
        Ok(())
    }

    fn write_at(&mut self, values: &SparseValues) -> Result<(), TrainerError> {
        if values
            .tensors
            .iter()
            .any(|(_, v)| v.iter().any(|x| !x.is_finite()))
        {
            return Err(TrainerError::NonFinite { what: "parameters" });
        }
        values.write_into(&mut self.theta)
    }

    fn step(&mut self, ids: &[u64], _schedule_step: u64) -> Result<InnerStep, TrainerError> {
        let loss = self.loss(Split::Train, ids) as f32;
        // Gradient descent on the batch's mean loss, scaled so that a coordinate of one sample
        // moves LR / batch of the way to its target.
        let k = ids.len().max(1) as f32;
        let mut grad: Vec<(usize, usize, f32)> = Vec::new();
        for &id in ids {
            for (t, i) in self.subset(Split::Train, id) {
                grad.push((t, i, (self.theta[t][i] - self.target[t][i]) / k));
            }
        }
        for (t, i, g) in grad {
            self.theta[t][i] -= LR * g;
        }
        Ok(InnerStep {
            loss,
            lr: f64::from(LR),
        })
    }

    fn eval(&mut self, split: Split, ids: &[u64]) -> Result<f64, TrainerError> {
        Ok(self.loss(split, ids))
    }

    fn reset_optimizer(&mut self) -> Result<(), TrainerError> {
        Ok(())
    }

    fn hf_config(&self) -> serde_json::Value {
        serde_json::json!({ "model_type": "covenant-standin", "seed": self.seed })
    }

    fn describe(&self) -> String {
        "stand-in (quadratic, flat buffers)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_lowers_the_loss_more_on_own_samples() {
        let mut a = Standin::new(3, 1000, 100);
        let own: Vec<u64> = (0..8).collect();
        let other: Vec<u64> = (500..508).collect();
        let (own0, other0) = (
            a.eval(Split::Train, &own).unwrap(),
            a.eval(Split::Train, &other).unwrap(),
        );
        for _ in 0..4 {
            a.step(&own, 0).unwrap();
        }
        let (own1, other1) = (
            a.eval(Split::Train, &own).unwrap(),
            a.eval(Split::Train, &other).unwrap(),
        );
        assert!(own1 < own0 && other1 < other0);
        assert!(
            (own0 - own1) / own0 > (other0 - other1) / other0,
            "own data helps more"
        );
        // The same seed is the same model.
        let b = Standin::new(3, 1000, 100);
        assert_eq!(
            b.params().unwrap(),
            Standin::new(3, 1000, 100).params().unwrap()
        );
    }
}
