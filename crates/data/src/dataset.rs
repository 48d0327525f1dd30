//! Reading prepared token shards: memory-mapped, validated against the manifest.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{DataError, Result};
use crate::manifest::{parse_hash, Manifest, SplitInfo};

/// Which split to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    /// "train" or "val".
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Options of [`Dataset::open_with`].
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// Hash every shard and check every token id against the vocabulary (reads all the data).
    pub verify: bool,
    /// Refuse a dataset made with another tokenizer (BLAKE3 of its `tokenizer.json`).
    pub expected_tokenizer: Option<[u8; 32]>,
    /// Sample length to use instead of the manifest's.
    pub seq_len: Option<u32>,
}

struct Shard {
    path: PathBuf,
    map: Mmap,
}

#[derive(Default)]
struct SplitData {
    shards: Vec<Shard>,
    /// `first_sample[i]` = id of the first sample of shard i; one extra entry = total.
    first_sample: Vec<u64>,
}

/// A prepared dataset: token shards with their manifest.
pub struct Dataset {
    dir: PathBuf,
    manifest: Manifest,
    seq_len: u32,
    train: SplitData,
    val: SplitData,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("dir", &self.dir)
            .field("seq_len", &self.seq_len)
            .field("train_samples", &self.num_samples(Split::Train))
            .field("val_samples", &self.num_samples(Split::Val))
            .finish()
    }
}

impl Dataset {
    /// Opens `dir` (containing `manifest.json`): checks the manifest, that every shard exists
    /// with exactly 4 × tokens bytes, and, if `tokenizer.json` is present, that it is the one
    /// the manifest names. Does not read the token data (see [`Dataset::verify`]).
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, &OpenOptions::default())
    }

    /// [`Dataset::open`] with options.
    pub fn open_with(dir: &Path, opts: &OpenOptions) -> Result<Self> {
        let mpath = dir.join("manifest.json");
        let manifest = Manifest::read(&mpath)?;
        let tok_hash = parse_hash(&manifest.tokenizer.blake3)
            .ok_or_else(|| DataError::manifest(&mpath, "bad tokenizer hash"))?;
        if let Some(expected) = opts.expected_tokenizer {
            if expected != tok_hash {
                return Err(DataError::manifest(
                    &mpath,
                    format!(
                        "prepared with tokenizer {} but tokenizer {} was expected",
                        manifest.tokenizer.blake3,
                        blake3::Hash::from(expected).to_hex()
                    ),
                ));
            }
        }
        let tpath = dir.join("tokenizer.json");
        if tpath.exists() {
            let bytes = crate::read_limited(&tpath, crate::tokenizer::MAX_TOKENIZER_BYTES)?;
            let h = blake3::hash(&bytes);
            if *h.as_bytes() != tok_hash {
                return Err(DataError::tokenizer(
                    &tpath,
                    format!(
                        "hash {} does not match the manifest's {}",
                        h.to_hex(),
                        manifest.tokenizer.blake3
                    ),
                ));
            }
        }
        let seq_len = opts.seq_len.unwrap_or(manifest.seq_len);
        if seq_len == 0 {
            return Err(DataError::InvalidArgument("seq_len must be > 0".into()));
        }
        let train = open_split(dir, &manifest.train, seq_len)?;
        let val = open_split(dir, &manifest.val, seq_len)?;
        let ds = Dataset {
            dir: dir.to_path_buf(),
            manifest,
            seq_len,
            train,
            val,
        };
        if opts.verify {
            ds.verify()?;
        }
        Ok(ds)
    }

    /// Reads every shard: its BLAKE3 must match the manifest and every token id must be below the
    /// vocabulary size.
    pub fn verify(&self) -> Result<()> {
        let vocab = self.manifest.tokenizer.vocab_size;
        for (data, info) in [
            (&self.train, &self.manifest.train),
            (&self.val, &self.manifest.val),
        ] {
            for (shard, si) in data.shards.iter().zip(&info.shards) {
                let h = blake3::hash(&shard.map[..]);
                if h.to_hex().as_str() != si.blake3 {
                    return Err(DataError::shard(
                        &shard.path,
                        format!(
                            "BLAKE3 {} does not match the manifest's {}",
                            h.to_hex(),
                            si.blake3
                        ),
                    ));
                }
                check_ids(&shard.path, &shard.map[..], 0, vocab)?;
            }
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// Tokens per sample.
    pub fn seq_len(&self) -> u32 {
        self.seq_len
    }
    /// Vocabulary size of the tokenizer that made the shards.
    pub fn vocab_size(&self) -> u32 {
        self.manifest.tokenizer.vocab_size
    }
    /// BLAKE3 of that tokenizer's `tokenizer.json`.
    pub fn tokenizer_hash(&self) -> [u8; 32] {
        parse_hash(&self.manifest.tokenizer.blake3).unwrap_or([0; 32])
    }
    /// Tokens in a split.
    pub fn num_tokens(&self, split: Split) -> u64 {
        match split {
            Split::Train => self.manifest.train.tokens,
            Split::Val => self.manifest.val.tokens,
        }
    }

    fn split(&self, split: Split) -> &SplitData {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }

    /// Number of samples: non-overlapping `seq_len` windows inside each shard (a shard's last
    /// partial window is not a sample).
    pub fn num_samples(&self, split: Split) -> u64 {
        self.split(split).first_sample.last().copied().unwrap_or(0)
    }

    /// Sample `id` of `split`: `seq_len` token ids, each checked to be below the vocabulary size.
    pub fn sample(&self, split: Split, id: u64) -> Result<Vec<u32>> {
        // The range check comes before the allocation: `seq_len` comes from the manifest (or the
        // caller) and is only backed by shard bytes for an id that exists.
        let n = self.num_samples(split);
        if id >= n {
            return Err(DataError::SampleOutOfRange {
                split: split.name(),
                id,
                num_samples: n,
            });
        }
        let mut out = vec![0u32; self.seq_len as usize];
        self.sample_into(split, id, &mut out)?;
        Ok(out)
    }

    /// [`Dataset::sample`] into a caller's buffer of length `seq_len`.
    pub fn sample_into(&self, split: Split, id: u64, out: &mut [u32]) -> Result<()> {
        let data = self.split(split);
        let n = self.num_samples(split);
        if id >= n {
            return Err(DataError::SampleOutOfRange {
                split: split.name(),
                id,
                num_samples: n,
            });
        }
        if out.len() != self.seq_len as usize {
            return Err(DataError::InvalidArgument(format!(
                "buffer of {} tokens for samples of {}",
                out.len(),
                self.seq_len
            )));
        }
        // the shard whose sample range holds id
        let s = data.first_sample.partition_point(|&first| first <= id) - 1;
        let shard = &data.shards[s];
        let start = ((id - data.first_sample[s]) * u64::from(self.seq_len) * 4) as usize;
        let bytes = &shard.map[start..start + out.len() * 4];
        let vocab = self.manifest.tokenizer.vocab_size;
        for (i, (o, b)) in out.iter_mut().zip(bytes.chunks_exact(4)).enumerate() {
            let t = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if t >= vocab {
                return Err(DataError::shard(
                    &shard.path,
                    format!(
                        "token id {t} at token {} is not below the vocabulary size {vocab}",
                        start / 4 + i
                    ),
                ));
            }
            *o = t;
        }
        Ok(())
    }
}

fn check_ids(path: &Path, bytes: &[u8], base: usize, vocab: u32) -> Result<()> {
    for (i, b) in bytes.chunks_exact(4).enumerate() {
        let t = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if t >= vocab {
            return Err(DataError::shard(
                path,
                format!(
                    "token id {t} at token {} is not below the vocabulary size {vocab}",
                    base + i
                ),
            ));
        }
    }
    Ok(())
}

fn open_split(dir: &Path, info: &SplitInfo, seq_len: u32) -> Result<SplitData> {
    let mut data = SplitData {
        shards: Vec::new(),
        first_sample: vec![0],
    };
    let mut next: u64 = 0;
    for si in &info.shards {
        let path = dir.join(&si.file);
        let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(&path, e))?.len();
        let expected = si.tokens.checked_mul(4);
        if expected != Some(len) {
            return Err(DataError::shard(
                &path,
                format!(
                    "{len} bytes but the manifest says {} tokens ({} bytes): truncated or wrong file",
                    si.tokens,
                    si.tokens.saturating_mul(4)
                ),
            ));
        }
        if usize::try_from(len).is_err() {
            return Err(DataError::shard(&path, "larger than the address space"));
        }
        // SAFETY: the map is read-only; shards are written once by `prepare` and never modified
        // in place (a new `prepare` deletes and recreates them, after removing the manifest).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(&path, e))?;
        next += si.tokens / u64::from(seq_len);
        data.first_sample.push(next);
        data.shards.push(Shard { path, map });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ShardInfo, TokenizerInfo, DTYPE, FORMAT, FORMAT_VERSION};

    /// Found by the `token_shard` fuzz target: a manifest (or caller) with a huge `seq_len` and too
    /// few tokens for one sample made `sample` allocate `seq_len` tokens (16 GiB) before refusing
    /// the id as out of range.
    #[test]
    fn huge_seq_len_without_samples_is_refused_before_allocating() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let shard = [1u32, 2]
            .iter()
            .flat_map(|t| t.to_le_bytes())
            .collect::<Vec<u8>>();
        std::fs::write(tmp.path().join("train-0.bin"), &shard).expect("write shard");
        let m = Manifest {
            format: FORMAT.into(),
            version: FORMAT_VERSION,
            dtype: DTYPE.into(),
            seq_len: u32::MAX,
            total_tokens: 2,
            tokenizer: TokenizerInfo {
                blake3: blake3::hash(b"tok").to_hex().to_string(),
                vocab_size: 10,
                eot_id: 0,
            },
            train: SplitInfo {
                documents: 1,
                tokens: 2,
                shards: vec![ShardInfo {
                    file: "train-0.bin".into(),
                    tokens: 2,
                    blake3: blake3::hash(&shard).to_hex().to_string(),
                }],
            },
            val: SplitInfo::default(),
            source: None,
        };
        m.write(&tmp.path().join("manifest.json"))
            .expect("write manifest");
        let ds = Dataset::open(tmp.path()).expect("open");
        ds.verify().expect("verify");
        assert_eq!(ds.num_samples(Split::Train), 0);
        for split in [Split::Train, Split::Val] {
            assert!(matches!(
                ds.sample(split, 0),
                Err(DataError::SampleOutOfRange { num_samples: 0, .. })
            ));
        }
        let opts = OpenOptions {
            seq_len: Some(u32::MAX - 1),
            ..OpenOptions::default()
        };
        let ds = Dataset::open_with(tmp.path(), &opts).expect("open with seq_len");
        assert!(matches!(
            ds.sample(Split::Train, 0),
            Err(DataError::SampleOutOfRange { .. })
        ));
    }
}
