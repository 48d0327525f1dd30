//! The training API the rest of the system calls: steps, evaluation, flat parameter views and
//! checkpoints. Only this crate touches tch; everything crossing its boundary is plain data.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{read_safetensors, write_atomic, write_safetensors};
use crate::config::ModelConfig;
use crate::error::{ModelError, Result};
use crate::llama::Llama;
use crate::optim::OptimConfig;

/// Where to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceChoice {
    /// The first CUDA device if there is one, else the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    fn resolve(self) -> Result<Device> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(i) => {
                let n = tch::Cuda::device_count();
                if (i as i64) < n {
                    Ok(Device::Cuda(i))
                } else {
                    Err(ModelError::DeviceUnavailable(format!(
                        "cuda:{i} ({n} CUDA devices visible)"
                    )))
                }
            }
        }
    }

    /// What this choice resolves to on this machine, for logs.
    pub fn describe(self) -> String {
        match self.resolve() {
            Ok(Device::Cpu) => format!("cpu ({} threads)", tch::get_num_threads()),
            Ok(Device::Cuda(i)) => format!("cuda:{i} (bf16 matmuls, fp32 master weights)"),
            Ok(d) => format!("{d:?}"),
            Err(e) => e.to_string(),
        }
    }
}

/// Number of intra-op CPU threads libtorch uses.
pub fn set_num_threads(n: usize) {
    tch::set_num_threads(n.clamp(1, i32::MAX as usize) as i32);
}

/// One parameter tensor as plain data: Hugging Face name, shape, row-major fp32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamView {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// What one optimizer step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean next-token cross-entropy of the batch (before the update).
    pub loss: f32,
    /// Global L2 norm of the gradient before clipping.
    pub grad_norm: f32,
    /// Learning rate used for this step.
    pub lr: f64,
}

#[derive(Serialize, Deserialize)]
struct TrainerManifest {
    format: String,
    step: u64,
    seed: u64,
    optim: OptimConfig,
    model: ModelConfig,
    files: Vec<String>,
}

const MANIFEST_FORMAT: &str = "covenant-trainer-v1";
pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const OPTIM_FILE: &str = "optimizer.safetensors";
pub const MANIFEST_FILE: &str = "trainer.json";

/// A model plus its AdamW state.
pub struct Trainer {
    pub(crate) model: Llama,
    opt: OptimConfig,
    seed: u64,
    step: u64,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
}

impl Trainer {
    /// A freshly initialised model (seeded) with zero optimizer state.
    pub fn new(
        cfg: ModelConfig,
        opt: OptimConfig,
        seed: u64,
        device: DeviceChoice,
    ) -> Result<Self> {
        cfg.validate()?;
        opt.validate()?;
        let device = device.resolve()?;
        Self::fresh(Llama::new(&cfg, seed, device)?, opt, seed)
    }

    /// A trainer at step 0 with zero optimizer state around `model` (allocated at the first
    /// step: a model that is only evaluated, a validator's, never holds it).
    fn fresh(model: Llama, opt: OptimConfig, seed: u64) -> Result<Self> {
        Ok(Trainer {
            model,
            opt,
            seed,
            step: 0,
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
        })
    }

    pub fn steps_done(&self) -> u64 {
        self.step
    }
    pub fn model_config(&self) -> &ModelConfig {
        &self.model.cfg
    }
    pub fn optim_config(&self) -> &OptimConfig {
        &self.opt
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// The device this trainer runs on, for logs.
    pub fn device_description(&self) -> String {
        match self.model.device {
            Device::Cpu => format!("cpu ({} threads, fp32)", tch::get_num_threads()),
            Device::Cuda(i) => format!("cuda:{i} (bf16 matmuls, fp32 master weights)"),
            d => format!("{d:?}"),
        }
    }
    /// Replace the optimizer settings (e.g. a new schedule); the AdamW moments are kept.
    pub fn set_optim_config(&mut self, opt: OptimConfig) -> Result<()> {
        opt.validate()?;
        self.opt = opt;
        Ok(())
    }
    /// Zero the AdamW moments and the step counter (a re-join starts with fresh optimizer state).
    pub fn reset_optimizer(&mut self) -> Result<()> {
        self.exp_avg = Vec::new();
        self.exp_avg_sq = Vec::new();
        self.step = 0;
        Ok(())
    }

    /// Whether the AdamW moments are allocated (they are from the first step on).
    pub fn holds_optimizer_state(&self) -> bool {
        !self.exp_avg.is_empty()
    }

    /// Names and shapes of the parameters, in checkpoint order.
    pub fn param_specs(&self) -> Vec<(String, Vec<usize>)> {
        self.model
            .names
            .iter()
            .cloned()
            .zip(self.model.shapes.iter().cloned())
            .collect()
    }

    /// Check a `batch × seq` token buffer and turn it into an i64 tensor on the model's device.
    /// `tokens` as libtorch ids, each checked against the vocabulary.
    pub(crate) fn token_ids(&self, tokens: &[u32]) -> Result<Vec<i64>> {
        let vocab = self.model.cfg.vocab_size;
        tokens
            .iter()
            .enumerate()
            .map(|(position, &token)| {
                if token as usize >= vocab {
                    Err(ModelError::TokenOutOfRange {
                        token,
                        position,
                        vocab_size: vocab,
                    })
                } else {
                    Ok(i64::from(token))
                }
            })
            .collect()
    }

    pub(crate) fn tokens_tensor(&self, tokens: &[u32], batch: usize) -> Result<Tensor> {
        if batch == 0 {
            return Err(ModelError::InvalidBatch("batch must be > 0".into()));
        }
        if tokens.is_empty() || tokens.len() % batch != 0 {
            return Err(ModelError::InvalidBatch(format!(
                "{} tokens cannot be split into {batch} equal sequences",
                tokens.len()
            )));
        }
        let seq = tokens.len() / batch;
        let max = self.model.cfg.max_seq_len;
        if seq < 2 || seq > max {
            return Err(ModelError::InvalidBatch(format!(
                "sequence length {seq} must be in 2..={max} (max_seq_len)"
            )));
        }
        let ids = self.token_ids(tokens)?;
        Ok(Tensor::f_from_slice(&ids)?
            .f_view([batch as i64, seq as i64])?
            .f_to_device(self.model.device)?)
    }

    /// One AdamW step on `batch` sequences laid out back to back in `tokens`, at this trainer's
    /// own position in the learning-rate schedule (the steps it has taken).
    ///
    /// A non-finite loss or gradient leaves parameters and optimizer state untouched and returns
    /// [`ModelError::NonFiniteLoss`].
    pub fn step(&mut self, tokens: &[u32], batch: usize) -> Result<StepStats> {
        self.step_at(tokens, batch, self.step)
    }

    /// [`Trainer::step`] with the learning rate of step `schedule_step` of the schedule, for a
    /// trainer that is one of many on a shared schedule (a miner that joined a run late). AdamW's
    /// bias correction still counts this trainer's own steps since its optimizer state was
    /// fresh, as `torch.optim.AdamW` does.
    pub fn step_at(
        &mut self,
        tokens: &[u32],
        batch: usize,
        schedule_step: u64,
    ) -> Result<StepStats> {
        let x = self.tokens_tensor(tokens, batch)?;
        let loss_t = self.model.loss(&x)?;
        let grads = Tensor::f_run_backward(&[&loss_t], &self.model.params, false, false)?;
        let _guard = tch::no_grad_guard();
        let loss = loss_t.f_double_value(&[])? as f32;
        let mut norms = Vec::with_capacity(grads.len());
        for g in &grads {
            norms.push(g.f_norm()?);
        }
        let total = Tensor::f_stack(&norms, 0)?.f_norm()?.f_double_value(&[])?;
        if !loss.is_finite() || !total.is_finite() {
            return Err(ModelError::NonFiniteLoss(if loss.is_finite() {
                total as f32
            } else {
                loss
            }));
        }
        // torch.nn.utils.clip_grad_norm_: scale by min(1, clip / (norm + 1e-6)).
        let clip = if self.opt.grad_clip > 0.0 {
            (self.opt.grad_clip / (total + 1e-6)).min(1.0)
        } else {
            1.0
        };
        let lr = self.opt.lr_at(schedule_step);
        self.adamw(grads, clip, lr)?;
        self.step += 1;
        Ok(StepStats {
            loss,
            grad_norm: total as f32,
            lr,
        })
    }

    /// Decoupled AdamW (as `torch.optim.AdamW`), gradients pre-scaled by `clip`.
    fn adamw(&mut self, mut grads: Vec<Tensor>, clip: f64, lr: f64) -> Result<()> {
        let o = &self.opt;
        let t = (self.step + 1) as i32;
        let bc1 = 1.0 - o.beta1.powi(t);
        let bc2_sqrt = (1.0 - o.beta2.powi(t)).sqrt();
        let step_size = lr / bc1;
        if self.exp_avg.is_empty() {
            (self.exp_avg, self.exp_avg_sq) = zero_state(&self.model)?;
        }
        for (i, g) in grads.iter_mut().enumerate() {
            if clip != 1.0 {
                let _ = g.f_mul_scalar_(clip)?;
            }
            let decays = self.model.decays(i);
            let p = &mut self.model.params[i];
            if o.weight_decay > 0.0 && decays {
                let _ = p.f_mul_scalar_(1.0 - lr * o.weight_decay)?;
            }
            let _ = self.exp_avg[i].f_lerp_(g, 1.0 - o.beta1)?;
            let sq = g.f_square()?;
            let _ = self.exp_avg_sq[i].f_lerp_(&sq, 1.0 - o.beta2)?;
            // p -= step_size * m / (sqrt(v)/bc2_sqrt + eps), as p += m / denom with the sign and
            // the step size folded into denom.
            let mut denom = self.exp_avg_sq[i].f_sqrt()?;
            let _ = denom.f_mul_scalar_(-1.0 / (bc2_sqrt * step_size))?;
            let _ = denom.f_add_scalar_(-o.eps / step_size)?;
            let _ = p.f_addcdiv_(&self.exp_avg[i], &denom)?;
        }
        Ok(())
    }

    /// Mean next-token loss without gradients.
    pub fn eval_loss(&mut self, tokens: &[u32], batch: usize) -> Result<f32> {
        let x = self.tokens_tensor(tokens, batch)?;
        let _guard = tch::no_grad_guard();
        let l = self.model.loss(&x)?.f_double_value(&[])? as f32;
        Ok(l)
    }

    /// Next-token loss of each of the `batch` sequences, without gradients.
    pub fn eval_losses(&mut self, tokens: &[u32], batch: usize) -> Result<Vec<f32>> {
        let x = self.tokens_tensor(tokens, batch)?;
        let _guard = tch::no_grad_guard();
        host_f32(&self.model.sequence_losses(&x)?)
    }

    /// Logits for every position, `[batch, seq, vocab]` flattened row-major, fp32.
    pub fn logits(&mut self, tokens: &[u32], batch: usize) -> Result<Vec<f32>> {
        let x = self.tokens_tensor(tokens, batch)?;
        let _guard = tch::no_grad_guard();
        host_f32(&self.model.logits(&x)?)
    }

    /// Flat fp32 copies of every parameter, in checkpoint order. Empty only if libtorch fails to
    /// copy (device out of memory); [`Trainer::try_params`] reports that error.
    pub fn params(&self) -> Vec<ParamView> {
        self.try_params().unwrap_or_default()
    }

    /// Like [`Trainer::params`] but reporting libtorch errors (e.g. device memory).
    pub fn try_params(&self) -> Result<Vec<ParamView>> {
        let mut out = Vec::with_capacity(self.model.params.len());
        for (i, p) in self.model.params.iter().enumerate() {
            let cpu = p.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
            let n = cpu.numel();
            let mut data = vec![0f32; n];
            cpu.f_copy_data(&mut data, n)?;
            out.push(ParamView {
                name: self.model.names[i].clone(),
                shape: self.model.shapes[i].clone(),
                data,
            });
        }
        Ok(out)
    }

    /// Overwrite parameters by name. Every given view must name a parameter of this model, have
    /// its exact shape, and hold finite values; nothing is changed unless all views are valid.
    /// Parameters not mentioned are left as they are.
    pub fn set_params(&mut self, params: &[ParamView]) -> Result<()> {
        let mut plan = Vec::with_capacity(params.len());
        for v in params {
            let i = self
                .model
                .names
                .iter()
                .position(|n| *n == v.name)
                .ok_or_else(|| {
                    ModelError::ParamMismatch(format!("unknown parameter `{}`", v.name))
                })?;
            if v.shape != self.model.shapes[i] {
                return Err(ModelError::ParamMismatch(format!(
                    "`{}` has shape {:?}, the model has {:?}",
                    v.name, v.shape, self.model.shapes[i]
                )));
            }
            let n: usize = v.shape.iter().product();
            if v.data.len() != n {
                return Err(ModelError::ParamMismatch(format!(
                    "`{}` carries {} values for shape {:?} ({n} expected)",
                    v.name,
                    v.data.len(),
                    v.shape
                )));
            }
            if let Some(j) = v.data.iter().position(|x| !x.is_finite()) {
                return Err(ModelError::ParamMismatch(format!(
                    "`{}` has a non-finite value at index {j}",
                    v.name
                )));
            }
            if plan.iter().any(|&(k, _): &(usize, &ParamView)| k == i) {
                return Err(ModelError::ParamMismatch(format!(
                    "`{}` given twice",
                    v.name
                )));
            }
            plan.push((i, v));
        }
        let _guard = tch::no_grad_guard();
        for (i, v) in plan {
            let dims: Vec<i64> = v.shape.iter().map(|&d| d as i64).collect();
            let src = Tensor::f_from_slice(&v.data)?.f_view(dims.as_slice())?;
            self.model.params[i].f_copy_(&src)?;
        }
        Ok(())
    }

    /// Overwrite every parameter from flat fp32 buffers in checkpoint order (as
    /// [`Trainer::param_specs`] lists them), without copying them first. Nothing is changed
    /// unless every buffer has its tensor's length and holds finite values.
    pub fn set_params_flat(&mut self, theta: &[&[f32]]) -> Result<()> {
        if theta.len() != self.model.params.len() {
            return Err(ModelError::ParamMismatch(format!(
                "{} tensors for a model of {}",
                theta.len(),
                self.model.params.len()
            )));
        }
        for (i, v) in theta.iter().enumerate() {
            let n: usize = self.model.shapes[i].iter().product();
            if v.len() != n {
                return Err(ModelError::ParamMismatch(format!(
                    "`{}` carries {} values ({n} expected)",
                    self.model.names[i],
                    v.len()
                )));
            }
            if let Some(j) = v.iter().position(|x| !x.is_finite()) {
                return Err(ModelError::ParamMismatch(format!(
                    "`{}` has a non-finite value at index {j}",
                    self.model.names[i]
                )));
            }
        }
        let _guard = tch::no_grad_guard();
        for (i, v) in theta.iter().enumerate() {
            let dims: Vec<i64> = self.model.shapes[i].iter().map(|&d| d as i64).collect();
            let src = Tensor::f_from_slice(v)?.f_view(dims.as_slice())?;
            self.model.params[i].f_copy_(&src)?;
        }
        Ok(())
    }

    /// Overwrite parameter `tensor` at these flat (row-major) positions, in place: no copy of
    /// the model. Nothing is changed unless the tensor exists, every position is in range and
    /// every value is finite.
    pub fn write_at(&mut self, tensor: usize, positions: &[u32], values: &[f32]) -> Result<()> {
        let Some(p) = self.model.params.get_mut(tensor) else {
            return Err(ModelError::ParamMismatch(format!(
                "no parameter {tensor} (the model has {})",
                self.model.shapes.len()
            )));
        };
        let n: usize = self.model.shapes[tensor].iter().product();
        if positions.len() != values.len() {
            return Err(ModelError::ParamMismatch(format!(
                "{} positions for {} values",
                positions.len(),
                values.len()
            )));
        }
        if let Some(&i) = positions.iter().find(|&&i| i as usize >= n) {
            return Err(ModelError::ParamMismatch(format!(
                "position {i} is outside `{}` ({n} values)",
                self.model.names[tensor]
            )));
        }
        if let Some(j) = values.iter().position(|x| !x.is_finite()) {
            return Err(ModelError::ParamMismatch(format!(
                "`{}` would get a non-finite value at position {}",
                self.model.names[tensor], positions[j]
            )));
        }
        if positions.is_empty() {
            return Ok(());
        }
        let _guard = tch::no_grad_guard();
        let device = p.device();
        let idx: Vec<i64> = positions.iter().map(|&i| i64::from(i)).collect();
        let idx = Tensor::f_from_slice(&idx)?.f_to_device(device)?;
        let src = Tensor::f_from_slice(values)?
            .f_to_device(device)?
            .f_to_kind(p.kind())?;
        let mut flat = p.f_view([-1])?;
        let _ = flat.f_index_copy_(0, &idx, &src)?;
        Ok(())
    }

    /// Write a Hugging Face checkpoint (`model.safetensors`, `config.json`) plus the optimizer
    /// state (`optimizer.safetensors`) and `trainer.json`, which is written last: a directory with
    /// a `trainer.json` is complete.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let manifest = dir.join(MANIFEST_FILE);
        if manifest.exists() {
            // The old manifest goes first so that a crash mid-save never leaves a manifest
            // pointing at a half-replaced set of files.
            std::fs::remove_file(&manifest).map_err(|e| ModelError::io(&manifest, e))?;
        }
        let specs = self.param_specs();
        let model: Vec<(String, Vec<usize>, &Tensor)> = specs
            .iter()
            .zip(&self.model.params)
            .map(|((n, s), t)| (n.clone(), s.clone(), t))
            .collect();
        write_safetensors(&dir.join(MODEL_FILE), &model)?;
        let cfg = serde_json::to_vec_pretty(&self.model.cfg.to_hf_json())
            .map_err(|e| ModelError::ckpt(dir.join(CONFIG_FILE), e.to_string()))?;
        write_atomic(&dir.join(CONFIG_FILE), &cfg)?;
        // Not allocated yet: the state is zero, and saved as such.
        let zeros = if self.exp_avg.is_empty() {
            Some(zero_state(&self.model)?)
        } else {
            None
        };
        let (exp_avg, exp_avg_sq) = match &zeros {
            Some((a, b)) => (a, b),
            None => (&self.exp_avg, &self.exp_avg_sq),
        };
        let mut optim = Vec::with_capacity(2 * specs.len());
        for (i, (n, s)) in specs.iter().enumerate() {
            optim.push((format!("exp_avg.{n}"), s.clone(), &exp_avg[i]));
            optim.push((format!("exp_avg_sq.{n}"), s.clone(), &exp_avg_sq[i]));
        }
        write_safetensors(&dir.join(OPTIM_FILE), &optim)?;
        let m = TrainerManifest {
            format: MANIFEST_FORMAT.into(),
            step: self.step,
            seed: self.seed,
            optim: self.opt.clone(),
            model: self.model.cfg.clone(),
            files: vec![MODEL_FILE.into(), CONFIG_FILE.into(), OPTIM_FILE.into()],
        };
        let bytes = serde_json::to_vec_pretty(&m)
            .map_err(|e| ModelError::ckpt(&manifest, e.to_string()))?;
        write_atomic(&manifest, &bytes)
    }

    /// Write only the model as a Hugging Face checkpoint (`model.safetensors`, `config.json`),
    /// loadable by [`Trainer::from_hf`] and `LlamaForCausalLM.from_pretrained`.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let specs = self.param_specs();
        let model: Vec<(String, Vec<usize>, &Tensor)> = specs
            .iter()
            .zip(&self.model.params)
            .map(|((n, s), t)| (n.clone(), s.clone(), t))
            .collect();
        write_safetensors(&dir.join(MODEL_FILE), &model)?;
        let cfg = serde_json::to_vec_pretty(&self.model.cfg.to_hf_json())
            .map_err(|e| ModelError::ckpt(dir.join(CONFIG_FILE), e.to_string()))?;
        write_atomic(&dir.join(CONFIG_FILE), &cfg)
    }

    /// Resume from a directory written by [`Trainer::save`]; continuing gives the same parameters
    /// as never having stopped.
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<Self> {
        let mpath = dir.join(MANIFEST_FILE);
        let bytes = std::fs::read(&mpath).map_err(|e| ModelError::io(&mpath, e))?;
        let m: TrainerManifest = serde_json::from_slice(&bytes)
            .map_err(|e| ModelError::ckpt(&mpath, format!("bad JSON: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(ModelError::ckpt(
                &mpath,
                format!("format `{}`, expected `{MANIFEST_FORMAT}`", m.format),
            ));
        }
        m.model.validate()?;
        m.optim.validate()?;
        if read_checkpoint_config(dir)? != m.model {
            return Err(ModelError::ckpt(
                dir.join(CONFIG_FILE),
                "config.json disagrees with trainer.json",
            ));
        }
        let device = device.resolve()?;
        let specs = m.model.param_shapes();
        let tensors = read_safetensors(&dir.join(MODEL_FILE), &specs, &[])?;
        let model = Llama::from_tensors(&m.model, tensors, device)?;
        let mut ospecs = Vec::with_capacity(2 * specs.len());
        for (n, s) in &specs {
            ospecs.push((format!("exp_avg.{n}"), s.clone()));
            ospecs.push((format!("exp_avg_sq.{n}"), s.clone()));
        }
        let state = read_safetensors(&dir.join(OPTIM_FILE), &ospecs, &[])?;
        let mut exp_avg = Vec::with_capacity(specs.len());
        let mut exp_avg_sq = Vec::with_capacity(specs.len());
        for (k, t) in state.into_iter().enumerate() {
            let t = t.f_to_device(device)?;
            if k % 2 == 0 {
                exp_avg.push(t);
            } else {
                exp_avg_sq.push(t);
            }
        }
        Ok(Trainer {
            model,
            opt: m.optim,
            seed: m.seed,
            step: m.step,
            exp_avg,
            exp_avg_sq,
        })
    }

    /// Load model weights from a Hugging Face Llama checkpoint directory (`config.json` +
    /// `model.safetensors`, fp32) with fresh optimizer state.
    pub fn from_hf(dir: &Path, opt: OptimConfig, seed: u64, device: DeviceChoice) -> Result<Self> {
        opt.validate()?;
        let cfg = read_checkpoint_config(dir)?;
        let device = device.resolve()?;
        // A tied checkpoint may still carry a copy of the embedding as lm_head.
        let ignorable: &[&str] = if cfg.tie_embeddings {
            &["lm_head.weight"]
        } else {
            &[]
        };
        let tensors = read_safetensors(&dir.join(MODEL_FILE), &cfg.param_shapes(), ignorable)?;
        Self::fresh(Llama::from_tensors(&cfg, tensors, device)?, opt, seed)
    }
}

/// The model of a checkpoint directory, from its `config.json`.
pub(crate) fn read_checkpoint_config(dir: &Path) -> Result<ModelConfig> {
    let cpath = dir.join(CONFIG_FILE);
    let cbytes = std::fs::read(&cpath).map_err(|e| ModelError::io(&cpath, e))?;
    let hf: serde_json::Value = serde_json::from_slice(&cbytes)
        .map_err(|e| ModelError::ckpt(&cpath, format!("bad JSON: {e}")))?;
    ModelConfig::from_hf_json(&hf).map_err(|e| ModelError::ckpt(&cpath, e.to_string()))
}

fn zero_state(model: &Llama) -> Result<(Vec<Tensor>, Vec<Tensor>)> {
    let mut a = Vec::with_capacity(model.params.len());
    let mut b = Vec::with_capacity(model.params.len());
    for p in &model.params {
        a.push(Tensor::f_zeros_like(p)?.f_to_kind(Kind::Float)?);
        b.push(Tensor::f_zeros_like(p)?.f_to_kind(Kind::Float)?);
    }
    Ok((a, b))
}

/// An fp32 tensor's values, row-major, on the host.
pub(crate) fn host_f32(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.f_to_device(Device::Cpu)?.f_contiguous()?;
    let n = t.numel();
    let mut out = vec![0f32; n];
    t.f_copy_data(&mut out, n)?;
    Ok(out)
}
