//! The run specification every participant agrees on (`run.json`): model, data, inner
//! optimizer, protocol parameters and checkpoint cadence. Its BLAKE3 hash is the run id bound
//! into every signed upload, so a peer running a different spec cannot contribute.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use covenant_codec::{CodecConfig, IndexCoding};
use covenant_core::RunParams;
use covenant_model::{ModelConfig, OptimConfig};
use covenant_net::Genesis;
use serde::{Deserialize, Serialize};

/// Largest `run.json` read (bytes).
pub const MAX_SPEC_BYTES: u64 = 1 << 20;

/// How uploads code their indices (docs/WIRE.md). Either way every node decodes both; this is
/// what honest miners send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Indices {
    /// 12-bit packing, as the reference (145× below dense fp32 on `small`). A spec without the
    /// field means this: run specs written before the field existed keep their hash.
    #[default]
    Packed,
    /// Golomb-Rice coded gaps wherever that is smaller (213× on `small`; decoding costs about
    /// 2 ms more a payload there: docs/PERFORMANCE.md). New runs use it.
    Rice,
}

impl Indices {
    fn is_packed(&self) -> bool {
        *self == Indices::Packed
    }
}

/// What the run trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum DataSpec {
    /// The bundled public-domain corpus, prepared at the preset's sequence length in the run's
    /// cache on first use.
    Bundled,
    /// A directory written by `covenant data prepare` (the same on every machine).
    Prepared { dir: PathBuf },
}

/// The run specification (see module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Human-readable name; the chain's run id.
    pub name: String,
    /// Seed of the initial model and of the data pools.
    pub seed: u64,
    /// Model preset (`covenant model list`).
    pub preset: String,
    pub data: DataSpec,
    /// Sequences per inner step.
    pub batch: usize,
    /// Peak inner learning rate, warm-up steps and the inner steps the cosine spans.
    pub lr: f64,
    pub warmup_steps: u64,
    pub schedule_steps: u64,
    pub weight_decay: f64,
    /// Protocol parameters (window timing is taken from the chain's genesis).
    pub params: RunParams,
    /// Validators publish a checkpoint every this many windows.
    pub checkpoint_every: u64,
    /// Uploads, fingerprints and records are kept this many windows (joiners replay from them).
    pub keep_windows: u64,
    /// Validation sequences for the loss reported each window.
    pub val_sequences: usize,
    /// Values sampled per tensor for fingerprints.
    pub fingerprint_values: usize,
    /// Miners train window w + 1 while window w is gathered, carrying their own last upload
    /// until the network's step lands (every inner step sent once: docs/NODES.md, "Overlap").
    /// Off (the default): they wait for the outer step, then train (the reference's schedule).
    pub overlap: bool,
    /// How miners code their uploads' indices.
    #[serde(default, skip_serializing_if = "Indices::is_packed")]
    pub indices: Indices,
}

impl RunSpec {
    /// A local network on the `tiny` preset: short windows, few inner steps.
    pub fn local(name: &str, preset: &str) -> Self {
        let params = RunParams {
            inner_steps: 8,
            aggregation_size: 8,
            reserves: 4,
            uids_per_window: 8,
            // 32 sequences per loss (the reference's 8, and 16, are too few for the own-data
            // evidence to tell an honest `tiny` miner from one on other data in the first
            // judged window: docs/NODES.md).
            eval_sequences: 32,
            // Screens on 8 of them; 3 of the 8 evaluations go to challengers (docs/SCALING.md).
            screen_sequences: 8,
            eval_challengers: 3,
            ..RunParams::local()
        };
        RunSpec {
            name: name.to_string(),
            seed: 7,
            preset: preset.to_string(),
            data: DataSpec::Bundled,
            batch: 4,
            lr: 2e-3,
            warmup_steps: 8,
            schedule_steps: 2_000,
            weight_decay: 0.1,
            params,
            checkpoint_every: 5,
            keep_windows: 12,
            val_sequences: 16,
            fingerprint_values: 16,
            overlap: false,
            indices: Indices::Rice,
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        ensure!(
            meta.len() <= MAX_SPEC_BYTES,
            "{} is larger than {MAX_SPEC_BYTES} bytes",
            path.display()
        );
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&bytes, &path.display().to_string())
    }

    /// A run spec from its JSON (`what` names where it came from, for errors).
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self> {
        ensure!(
            bytes.len() as u64 <= MAX_SPEC_BYTES,
            "{what} is larger than {MAX_SPEC_BYTES} bytes"
        );
        let spec: RunSpec = serde_json::from_slice(bytes)
            .with_context(|| format!("{what} is not a valid run spec"))?;
        spec.validate()
            .with_context(|| format!("run spec {what}"))?;
        Ok(spec)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        write_atomic(path, &bytes)
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            !self.name.is_empty() && self.name.len() <= 64,
            "name must be 1..=64 bytes"
        );
        ModelConfig::preset(&self.preset)?;
        ensure!(
            self.batch >= 1 && self.batch <= 4096,
            "batch must be in 1..=4096"
        );
        ensure!(self.lr.is_finite() && self.lr > 0.0, "lr must be positive");
        ensure!(
            self.schedule_steps >= 1,
            "schedule_steps must be at least 1"
        );
        ensure!(
            self.weight_decay.is_finite() && self.weight_decay >= 0.0,
            "weight_decay must be ≥ 0"
        );
        ensure!(
            self.checkpoint_every >= 1,
            "checkpoint_every must be at least 1"
        );
        ensure!(
            self.keep_windows >= self.checkpoint_every + 2,
            "keep_windows ({}) must exceed checkpoint_every ({}) by 2 so joiners can replay",
            self.keep_windows,
            self.checkpoint_every
        );
        ensure!(
            self.val_sequences >= 1 && self.val_sequences <= 4096,
            "val_sequences must be in 1..=4096"
        );
        ensure!(
            self.fingerprint_values >= 1 && self.fingerprint_values <= 1024,
            "fingerprint_values must be in 1..=1024"
        );
        ensure!(
            self.params.inner_steps >= 1,
            "params.inner_steps must be at least 1"
        );
        self.params.validate()?;
        Ok(())
    }

    /// BLAKE3 of the canonical JSON: the run id of signed uploads.
    pub fn hash(&self) -> [u8; 32] {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let mut h = blake3::Hasher::new();
        h.update(b"covenant/run-spec/v1\0");
        h.update(&bytes);
        *h.finalize().as_bytes()
    }

    /// The protocol parameters with the chain's window timing.
    pub fn params_for(&self, g: &Genesis) -> Result<RunParams> {
        let p = RunParams {
            blocks_per_window: g.blocks_per_window,
            block_time_ms: g.block_time_ms,
            genesis_ms: g.genesis_time_ms,
            ..self.params.clone()
        };
        p.validate()?;
        if g.run_id != self.name {
            bail!(
                "the chain runs {:?} but the run spec is {:?}",
                g.run_id,
                self.name
            );
        }
        Ok(p)
    }

    pub fn model_config(&self, vocab: usize) -> Result<ModelConfig> {
        Ok(ModelConfig::preset(&self.preset)?.with_vocab(vocab))
    }

    pub fn optim_config(&self) -> OptimConfig {
        OptimConfig {
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup_steps: self.warmup_steps,
            total_steps: self.schedule_steps,
            ..OptimConfig::default()
        }
    }

    /// The encoder's index coding for this run's uploads.
    pub fn index_coding(&self) -> IndexCoding {
        match self.indices {
            Indices::Packed => IndexCoding::Packed,
            Indices::Rice => IndexCoding::Entropy,
        }
    }

    /// The codec: SPEC defaults, one worker thread (nodes share the machine's cores).
    pub fn codec_config(&self) -> CodecConfig {
        CodecConfig {
            ef_decay: self.params.error_feedback_beta as f32,
            threads: 1,
            ..CodecConfig::default()
        }
    }
}

/// Writes `bytes` to `path` through a temporary file (`<stem>.tmp<pid>` beside it) and a
/// rename. On failure (full disk, no permission) the temporary file is removed and the error
/// names `path` and the OS error; `path` itself is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_through(
        path,
        &path.with_extension(format!("tmp{}", std::process::id())),
        bytes,
    )
}

/// Writes `bytes` to the temporary file `tmp` and renames it onto `path` (same directory);
/// on failure `tmp` is removed and the error names `path`, `tmp` and the OS error.
pub fn write_through(path: &Path, tmp: &Path, bytes: &[u8]) -> Result<()> {
    let r = std::fs::write(tmp, bytes)
        .with_context(|| format!("writing {} (through {})", path.display(), tmp.display()))
        .and_then(|_| {
            std::fs::rename(tmp, path)
                .with_context(|| format!("renaming {} onto {}", tmp.display(), path.display()))
        });
    if r.is_err() {
        let _ = std::fs::remove_file(tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_spec_validates_roundtrips_and_hash_binds_fields() {
        let s = RunSpec::local("r", "tiny");
        s.validate().unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run.json");
        s.write(&p).unwrap();
        let back = RunSpec::read(&p).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.hash(), s.hash());
        let mut t = s.clone();
        t.batch += 1;
        assert_ne!(t.hash(), s.hash());
    }

    #[test]
    fn a_spec_without_the_index_coding_is_packed_and_keeps_its_hash() {
        let mut s = RunSpec::local("r", "tiny");
        assert_eq!(s.indices, Indices::Rice, "new runs code indices with Rice");
        assert_eq!(s.index_coding(), IndexCoding::Entropy);
        let rice = serde_json::to_value(&s).unwrap();
        assert_eq!(rice["indices"], "rice");
        s.indices = Indices::Packed;
        let packed = serde_json::to_value(&s).unwrap();
        assert!(packed.get("indices").is_none(), "{packed}");
        // A spec written before the field existed reads as packed, with the same hash.
        let back = RunSpec::parse(packed.to_string().as_bytes(), "old").unwrap();
        assert_eq!(back.indices, Indices::Packed);
        assert_eq!(back.hash(), s.hash());
        let bad = rice.to_string().replace("\"rice\"", "\"zip\"");
        assert!(RunSpec::parse(bad.as_bytes(), "bad").is_err());
    }

    #[test]
    fn bad_specs_are_refused_with_the_field() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("run.json");
        let mut s = RunSpec::local("r", "tiny");
        s.preset = "nope".into();
        s.write(&p).unwrap();
        assert!(format!("{:#}", RunSpec::read(&p).unwrap_err()).contains("nope"));
        let mut s = RunSpec::local("r", "tiny");
        s.keep_windows = 2;
        s.write(&p).unwrap();
        assert!(format!("{:#}", RunSpec::read(&p).unwrap_err()).contains("keep_windows"));
        std::fs::write(&p, b"{not json").unwrap();
        assert!(format!("{:#}", RunSpec::read(&p).unwrap_err()).contains("not a valid run spec"));
    }
}
