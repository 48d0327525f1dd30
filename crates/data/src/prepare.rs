//! Corpus → token shards + `manifest.json` (+ a copy of the tokenizer as `tokenizer.json`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::{DataError, Result};
use crate::input::{for_each_document, list_inputs, InputFile};
use crate::manifest::{
    Manifest, ShardInfo, SplitInfo, TokenizerInfo, DTYPE, FORMAT, FORMAT_VERSION,
};
use crate::tokenizer::{Tokenizer, DEFAULT_VOCAB_SIZE};

/// Default tokens per sample.
pub const DEFAULT_SEQ_LEN: u32 = 1024;
/// Default fraction of documents put in the validation split.
pub const DEFAULT_VAL_FRACTION: f64 = 0.05;
/// Default maximum tokens per shard file (64 MiB of u32).
pub const DEFAULT_SHARD_TOKENS: u64 = 1 << 24;
/// Default cap on the text bytes used to train a tokenizer.
pub const DEFAULT_TRAIN_BYTES: u64 = 1 << 30;

/// Where the tokenizer comes from.
#[derive(Debug, Clone)]
pub enum TokenizerSource {
    /// An existing `tokenizer.json`.
    File(PathBuf),
    /// Train a byte-level BPE of this vocabulary size on (up to `max_bytes` of) the input first.
    Train { vocab_size: u32, max_bytes: u64 },
}

/// Options of [`prepare`].
#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub tokenizer: TokenizerSource,
    pub seq_len: u32,
    /// Fraction of documents in the validation split, in `[0, 1)`.
    pub val_fraction: f64,
    /// Maximum tokens per shard file.
    pub shard_tokens: u64,
    /// Draw a progress bar on stderr (hidden anyway when stderr is not a terminal).
    pub progress: bool,
    /// Recorded as [`Manifest::source`].
    pub source: Option<String>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            tokenizer: TokenizerSource::Train {
                vocab_size: DEFAULT_VOCAB_SIZE,
                max_bytes: DEFAULT_TRAIN_BYTES,
            },
            seq_len: DEFAULT_SEQ_LEN,
            val_fraction: DEFAULT_VAL_FRACTION,
            shard_tokens: DEFAULT_SHARD_TOKENS,
            progress: true,
            source: None,
        }
    }
}

/// Whether document number `index` (0-based, in input order) belongs to the validation split:
/// `floor((index + 1) · f) > floor(index · f)`, i.e. every 1/f-th document, evenly spread.
pub fn is_val_document(index: u64, val_fraction: f64) -> bool {
    if val_fraction <= 0.0 {
        return false;
    }
    ((index + 1) as f64 * val_fraction).floor() > (index as f64 * val_fraction).floor()
}

fn progress_bar(enabled: bool, total: u64, what: &str) -> ProgressBar {
    let target = if enabled {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(total), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(what.to_string());
    pb
}

/// Streams every document of `inputs` to `f`.
fn stream_documents(
    inputs: &[InputFile],
    pb: &ProgressBar,
    f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    for file in inputs {
        let mut on_bytes = |n: u64| pb.inc(n);
        for_each_document(file, &mut on_bytes, f)?;
    }
    Ok(())
}

/// Trains a tokenizer on (up to `max_bytes` of) the documents under `input`.
pub fn train_tokenizer(
    input: &Path,
    vocab_size: u32,
    max_bytes: u64,
    progress: bool,
) -> Result<Tokenizer> {
    let inputs = list_inputs(input)?;
    let total: u64 = inputs.iter().map(|f| f.bytes).sum();
    let pb = progress_bar(progress, total, "train tokenizer");
    let (tx, rx) = mpsc::sync_channel::<String>(256);
    let result = std::thread::scope(|s| {
        let producer = s.spawn(|| {
            let mut used: u64 = 0;
            let r = stream_documents(&inputs, &pb, &mut |doc| {
                if used >= max_bytes {
                    return Err(DataError::Stopped);
                }
                used += doc.len() as u64;
                tx.send(doc)
                    .map_err(|_| DataError::InvalidArgument("tokenizer training stopped".into()))
            });
            drop(tx);
            match r {
                Err(DataError::Stopped) => Ok(used),
                Err(e) => Err(e),
                Ok(()) => Ok(used),
            }
        });
        let tok = Tokenizer::train(rx.into_iter(), vocab_size);
        let produced = producer
            .join()
            .map_err(|_| DataError::InvalidArgument("document reader thread panicked".into()))?;
        let used = produced?;
        if used == 0 {
            return Err(DataError::NoDocuments {
                path: input.to_path_buf(),
            });
        }
        tok
    });
    pb.finish_and_clear();
    result
}

struct ShardWriter {
    dir: PathBuf,
    prefix: &'static str,
    max_tokens: u64,
    cur: Option<(BufWriter<File>, blake3::Hasher, u64, String)>,
    done: Vec<ShardInfo>,
    documents: u64,
}

impl ShardWriter {
    fn new(dir: &Path, prefix: &'static str, max_tokens: u64) -> Self {
        ShardWriter {
            dir: dir.to_path_buf(),
            prefix,
            max_tokens,
            cur: None,
            done: Vec::new(),
            documents: 0,
        }
    }

    fn push(&mut self, tokens: &[u32]) -> Result<()> {
        let mut rest = tokens;
        while !rest.is_empty() {
            if self.cur.is_none() {
                let name = format!("{}-{:05}.bin", self.prefix, self.done.len());
                let path = self.dir.join(&name);
                let f = File::create(&path).map_err(|e| DataError::io(&path, e))?;
                self.cur = Some((
                    BufWriter::with_capacity(1 << 20, f),
                    blake3::Hasher::new(),
                    0,
                    name,
                ));
            }
            let Some((w, h, n, name)) = self.cur.as_mut() else {
                break;
            };
            let room = usize::try_from(self.max_tokens - *n).unwrap_or(usize::MAX);
            let take = room.min(rest.len());
            let mut buf = Vec::with_capacity(take * 4);
            for t in &rest[..take] {
                buf.extend_from_slice(&t.to_le_bytes());
            }
            let path = self.dir.join(name.as_str());
            w.write_all(&buf).map_err(|e| DataError::io(&path, e))?;
            h.update(&buf);
            *n += take as u64;
            rest = &rest[take..];
            if *n >= self.max_tokens {
                self.close()?;
            }
        }
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        if let Some((w, h, n, name)) = self.cur.take() {
            let path = self.dir.join(&name);
            let f = w
                .into_inner()
                .map_err(|e| DataError::io(&path, e.into_error()))?;
            f.sync_all().map_err(|e| DataError::io(&path, e))?;
            self.done.push(ShardInfo {
                file: name,
                tokens: n,
                blake3: h.finalize().to_hex().to_string(),
            });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SplitInfo> {
        self.close()?;
        let tokens = self.done.iter().map(|s| s.tokens).sum();
        Ok(SplitInfo {
            documents: self.documents,
            tokens,
            shards: self.done,
        })
    }
}

/// Tokenizes the corpus at `input` (a file or a directory, see [`crate::input`]) into `out_dir`:
/// `train-NNNNN.bin`, `val-NNNNN.bin` (little-endian u32 tokens, each document followed by the
/// end-of-text id), `tokenizer.json` and, written last, `manifest.json`.
pub fn prepare(input: &Path, out_dir: &Path, opts: &PrepareOptions) -> Result<Manifest> {
    if opts.seq_len == 0 {
        return Err(DataError::InvalidArgument("seq_len must be > 0".into()));
    }
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(DataError::InvalidArgument(format!(
            "val fraction {} is not in [0, 1)",
            opts.val_fraction
        )));
    }
    if opts.shard_tokens == 0 {
        return Err(DataError::InvalidArgument(
            "shard_tokens must be > 0".into(),
        ));
    }
    let inputs = list_inputs(input)?;
    let tokenizer = match &opts.tokenizer {
        TokenizerSource::File(p) => Tokenizer::load(p)?,
        TokenizerSource::Train {
            vocab_size,
            max_bytes,
        } => train_tokenizer(input, *vocab_size, *max_bytes, opts.progress)?,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| DataError::io(out_dir, e))?;
    // An interrupted run must not leave a manifest that describes other shards.
    let manifest_path = out_dir.join("manifest.json");
    match std::fs::remove_file(&manifest_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(DataError::io(&manifest_path, e)),
    }
    remove_old_shards(out_dir)?;
    tokenizer.save(&out_dir.join("tokenizer.json"))?;

    let total: u64 = inputs.iter().map(|f| f.bytes).sum();
    let pb = progress_bar(opts.progress, total, "tokenize");
    let mut train = ShardWriter::new(out_dir, "train", opts.shard_tokens);
    let mut val = ShardWriter::new(out_dir, "val", opts.shard_tokens);
    let eot = tokenizer.eot_id();
    let mut index: u64 = 0;
    let mut batch: Vec<String> = Vec::new();
    let mut batch_bytes = 0usize;
    let mut flush = |batch: &mut Vec<String>, index: &mut u64| -> Result<()> {
        let docs = std::mem::take(batch);
        for mut ids in tokenizer.encode_batch(docs)? {
            ids.push(eot);
            let w = if is_val_document(*index, opts.val_fraction) {
                &mut val
            } else {
                &mut train
            };
            w.documents += 1;
            w.push(&ids)?;
            *index += 1;
        }
        pb.set_message(format!("{index} documents"));
        Ok(())
    };
    stream_documents(&inputs, &pb, &mut |doc| {
        batch_bytes += doc.len();
        batch.push(doc);
        if batch_bytes >= (4 << 20) || batch.len() >= 1024 {
            batch_bytes = 0;
            flush(&mut batch, &mut index)?;
        }
        Ok(())
    })?;
    flush(&mut batch, &mut index)?;
    pb.finish_and_clear();
    let train = train.finish()?;
    let val = val.finish()?;
    if train.tokens == 0 {
        return Err(DataError::NoDocuments {
            path: input.to_path_buf(),
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
        dtype: DTYPE.into(),
        seq_len: opts.seq_len,
        total_tokens: train.tokens + val.tokens,
        tokenizer: TokenizerInfo {
            blake3: tokenizer.hash_hex(),
            vocab_size: tokenizer.vocab_size(),
            eot_id: eot,
        },
        train,
        val,
        source: opts.source.clone(),
    };
    manifest.write(&manifest_path)?;
    Ok(manifest)
}

fn remove_old_shards(dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if (name.starts_with("train-") || name.starts_with("val-")) && name.ends_with(".bin") {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| DataError::io(&p, e))?;
        }
    }
    Ok(())
}
