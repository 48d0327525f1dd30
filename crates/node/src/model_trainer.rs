//! [`crate::env::Trainer`] for the LLaMA model of `covenant-model` (tch) on a prepared dataset.

use std::sync::Arc;

use covenant_data::{Dataset, Split};
use covenant_model::Trainer as Model;

use crate::env::{InnerStep, SparseValues, Trainer, TrainerError};

/// The real model: a `covenant-model` trainer and the run's token shards.
pub struct ModelTrainer {
    model: Model,
    data: Arc<Dataset>,
    /// Sequences per forward pass when evaluating.
    batch: usize,
    shapes: Vec<(String, Vec<usize>)>,
}

impl ModelTrainer {
    pub fn new(model: Model, data: Arc<Dataset>, batch: usize) -> Self {
        let shapes = model.param_specs();
        ModelTrainer {
            model,
            data,
            batch: batch.max(1),
            shapes,
        }
    }

    fn tokens(&self, split: Split, ids: &[u64]) -> Result<Vec<u32>, TrainerError> {
        let mut out = Vec::with_capacity(ids.len() * self.data.seq_len() as usize);
        for &id in ids {
            out.extend_from_slice(&self.data.sample(split, id)?);
        }
        Ok(out)
    }
}

impl Trainer for ModelTrainer {
    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.shapes.clone()
    }

    fn samples(&self, split: Split) -> u64 {
        self.data.num_samples(split)
    }

    fn params(&self) -> Result<Vec<Vec<f32>>, TrainerError> {
        Ok(self
            .model
            .try_params()?
            .into_iter()
            .map(|v| v.data)
            .collect())
    }

    fn set_params(&mut self, theta: &[Vec<f32>]) -> Result<(), TrainerError> {
        let flat: Vec<&[f32]> = theta.iter().map(Vec::as_slice).collect();
        Ok(self.model.set_params_flat(&flat)?)
    }

    fn write_at(&mut self, values: &SparseValues) -> Result<(), TrainerError> {
        if values.tensors.len() != self.shapes.len() {
            return Err(TrainerError::Shape(format!(
                "{} tensors written into a model of {}",
                values.tensors.len(),
                self.shapes.len()
            )));
        }
        // All checked before anything is written.
        for ((pos, val), (_, shape)) in values.tensors.iter().zip(&self.shapes) {
            let n: usize = shape.iter().product();
            if pos.len() != val.len() || pos.iter().any(|&i| i as usize >= n) {
                return Err(TrainerError::Shape("positions outside the tensor".into()));
            }
            if val.iter().any(|x| !x.is_finite()) {
                return Err(TrainerError::NonFinite { what: "parameters" });
            }
        }
        for (i, (pos, val)) in values.tensors.iter().enumerate() {
            self.model.write_at(i, pos, val)?;
        }
        Ok(())
    }

    fn step(&mut self, ids: &[u64], schedule_step: u64) -> Result<InnerStep, TrainerError> {
        let toks = self.tokens(Split::Train, ids)?;
        let s = self.model.step_at(&toks, ids.len(), schedule_step)?;
        Ok(InnerStep {
            loss: s.loss,
            lr: s.lr,
        })
    }

    fn eval(&mut self, split: Split, ids: &[u64]) -> Result<f64, TrainerError> {
        let mut total = 0.0;
        let mut n = 0usize;
        for c in ids.chunks(self.batch) {
            let toks = self.tokens(split, c)?;
            total += f64::from(self.model.eval_loss(&toks, c.len())?) * c.len() as f64;
            n += c.len();
        }
        if n == 0 {
            return Err(TrainerError::Shape("no sequences to evaluate".into()));
        }
        let l = total / n as f64;
        if !l.is_finite() {
            return Err(TrainerError::NonFinite { what: "loss" });
        }
        Ok(l)
    }

    fn eval_each(&mut self, split: Split, ids: &[u64]) -> Result<Vec<f64>, TrainerError> {
        let mut out = Vec::with_capacity(ids.len());
        for c in ids.chunks(self.batch) {
            let toks = self.tokens(split, c)?;
            out.extend(
                self.model
                    .eval_losses(&toks, c.len())?
                    .into_iter()
                    .map(f64::from),
            );
        }
        if out.iter().any(|l| !l.is_finite()) {
            return Err(TrainerError::NonFinite { what: "loss" });
        }
        Ok(out)
    }

    fn reset_optimizer(&mut self) -> Result<(), TrainerError> {
        Ok(self.model.reset_optimizer()?)
    }

    fn hf_config(&self) -> serde_json::Value {
        self.model.model_config().to_hf_json()
    }

    fn describe(&self) -> String {
        self.model.device_description()
    }
}
