//! Byte-level BPE tokenizers trained and loaded with Hugging Face `tokenizers`, saved as a
//! `tokenizer.json` that Python `tokenizers` loads unchanged.

use std::path::{Path, PathBuf};

use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

use crate::error::{DataError, Result};

/// Default vocabulary size of a trained tokenizer (the id of [`EOT`] included).
pub const DEFAULT_VOCAB_SIZE: u32 = 8192;
/// The end-of-text token: appended after every document in the shards, id 0 in our tokenizers.
pub const EOT: &str = "<|endoftext|>";
/// The largest `tokenizer.json` we read.
pub const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

/// A loaded or freshly trained tokenizer with the BLAKE3 hash of its serialized JSON.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    json: Vec<u8>,
    hash: [u8; 32],
    vocab_size: u32,
    eot_id: u32,
    origin: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("origin", &self.origin)
            .field("vocab_size", &self.vocab_size)
            .field("hash", &self.hash_hex())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`. It must contain an end-of-text token (`<|endoftext|>`, `</s>` or
    /// `<eos>`), which separates documents in the shards.
    pub fn load(path: &Path) -> Result<Self> {
        let json = crate::read_limited(path, MAX_TOKENIZER_BYTES)?;
        Self::from_json(json, path.to_path_buf())
    }

    fn from_json(json: Vec<u8>, origin: PathBuf) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(&json)
            .map_err(|e| DataError::tokenizer(&origin, e.to_string()))?;
        let vocab_size = u32::try_from(inner.get_vocab_size(true))
            .map_err(|_| DataError::tokenizer(&origin, "vocabulary larger than 2^32"))?;
        let eot_id = [EOT, "</s>", "<eos>"]
            .iter()
            .find_map(|t| inner.token_to_id(t))
            .ok_or_else(|| {
                DataError::tokenizer(
                    &origin,
                    format!("no end-of-text token ({EOT}, </s> or <eos>)"),
                )
            })?;
        let hash = *blake3::hash(&json).as_bytes();
        Ok(Tokenizer {
            inner,
            json,
            hash,
            vocab_size,
            eot_id,
            origin,
        })
    }

    /// Trains a byte-level BPE tokenizer (GPT-2 style pre-tokenization, no prefix space,
    /// `<|endoftext|>` as id 0, all 256 byte symbols in the base alphabet) on `documents`.
    /// Deterministic: the same documents give the same `tokenizer.json`, byte for byte.
    pub fn train<I, S>(documents: I, vocab_size: u32) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        let origin = PathBuf::from("<training>");
        if vocab_size < 257 {
            return Err(DataError::InvalidArgument(format!(
                "vocab size {vocab_size} is below 257 (256 byte symbols + end-of-text)"
            )));
        }
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size as usize)
            .min_frequency(2)
            .special_tokens(vec![AddedToken::from(EOT.to_string(), true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build()
            .into();
        let mut tok = tokenizers::Tokenizer::new(BPE::default());
        let byte_level = ByteLevel::new(false, true, true);
        tok.with_pre_tokenizer(Some(byte_level));
        tok.with_decoder(Some(byte_level));
        tok.train(&mut trainer, documents)
            .map_err(|e| DataError::tokenizer(&origin, e.to_string()))?;
        let json = tok
            .to_string(false)
            .map_err(|e| DataError::tokenizer(&origin, e.to_string()))?
            .into_bytes();
        Self::from_json(json, origin)
    }

    /// Writes the exact bytes this tokenizer's hash covers.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::write_atomic(path, &self.json)
    }

    /// Token ids of `text` (no special tokens added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, false)
            .map_err(|e| DataError::tokenizer(&self.origin, e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Token ids of many texts, encoded in parallel; same result as [`Tokenizer::encode`] on each.
    pub fn encode_batch(&self, texts: Vec<String>) -> Result<Vec<Vec<u32>>> {
        let encs = self
            .inner
            .encode_batch(texts, false)
            .map_err(|e| DataError::tokenizer(&self.origin, e.to_string()))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// Text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| DataError::tokenizer(&self.origin, e.to_string()))
    }

    /// BLAKE3 of the serialized `tokenizer.json`.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }
    /// [`Tokenizer::hash`] in lowercase hex.
    pub fn hash_hex(&self) -> String {
        blake3::Hash::from(self.hash).to_hex().to_string()
    }
    /// Number of ids, added tokens included: every id is `< vocab_size`.
    pub fn vocab_size(&self) -> u32 {
        self.vocab_size
    }
    /// Id of the end-of-text token that separates documents.
    /// Bytes of the text token `id` stands for: its byte-level string has one character a
    /// byte; the end-of-text token and unknown ids have none.
    pub fn token_bytes(&self, id: u32) -> usize {
        if id == self.eot_id {
            return 0;
        }
        self.inner.id_to_token(id).map_or(0, |t| t.chars().count())
    }

    pub fn eot_id(&self) -> u32 {
        self.eot_id
    }
    /// The serialized JSON.
    pub fn json(&self) -> &[u8] {
        &self.json
    }
    /// The underlying Hugging Face tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
