//! The signed, versioned wire format of one peer's upload (byte layout in docs/WIRE.md) and its
//! validating decoder. Nothing a peer sends can make [`decode`] panic or allocate more than the
//! expected model's payload size.
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use crate::compress::TensorPayload;
use crate::geometry::{Layout, ModelLayout, TensorLayout};
use crate::pack;
use crate::rice;

/// `b"CVNTSLC1"`: covenant SparseLoCo payload.
pub const MAGIC: [u8; 8] = *b"CVNTSLC1";
/// Current format version.
pub const VERSION: u16 = 1;
/// Bytes before the tensor table.
pub const FIXED_HEADER_LEN: usize = 104;
/// Bytes after the body: blake3 hash (32) + ed25519 signature (64).
pub const TRAILER_LEN: usize = 96;

/// How indices are coded in a tensor's index section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum IndexMode {
    /// Every value of every chunk is sent; no index section.
    All = 0,
    /// The reference's 12-bit pair packing (chunks of at most 4096 values).
    Packed12 = 1,
    /// Little-endian u16 (chunks of more than 4096 values).
    Packed16 = 2,
    /// Golomb-Rice coded gaps ([`crate::rice`]).
    Rice = 3,
}

/// Which index coding the encoder should use for sparse tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IndexCoding {
    /// Fixed-width packing (12 bits per index).
    #[default]
    Packed,
    /// Rice-coded gaps wherever that is smaller than the packed form.
    Entropy,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodeOptions {
    pub index_coding: IndexCoding,
}

/// Who sent the payload and for what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadHeader {
    pub run_id: [u8; 32],
    pub window: u64,
    pub uid: u32,
}

/// A decoded (or to-be-encoded) upload: one [`TensorPayload`] per layout tensor, in layout order.
#[derive(Clone, Debug, PartialEq)]
pub struct Payload {
    pub header: PayloadHeader,
    pub tensors: Vec<TensorPayload>,
}

/// What the receiver expects: the model (names, shapes, codec config, hash) and the sender.
#[derive(Clone, Copy, Debug)]
pub struct ExpectedModel<'a> {
    pub layout: &'a ModelLayout,
    pub run_id: [u8; 32],
    pub window: u64,
    pub uid: u32,
}

/// Limits checked before anything is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_bytes: usize,
    pub max_tensors: usize,
    pub max_name_len: usize,
}

impl DecodeLimits {
    /// The largest payload an honest peer can produce for `layout` (packed indices), as the limit.
    pub fn for_layout(layout: &ModelLayout) -> Self {
        let max_bytes = max_encoded_len(layout);
        let max_name_len = layout
            .tensors
            .iter()
            .map(|t| t.name.len())
            .max()
            .unwrap_or(0);
        Self {
            max_bytes,
            max_tensors: layout.tensors.len(),
            max_name_len,
        }
    }
}

/// Why a payload was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum WireError {
    #[error("payload is {len} bytes, above the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("payload truncated: {what} needs {need} bytes at offset {offset}, {have} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    #[error("bad magic {0:02x?}")]
    BadMagic([u8; 8]),
    #[error("unsupported format version {0} (this build reads {VERSION})")]
    UnsupportedVersion(u16),
    #[error("reserved header flags set: {0:#06x}")]
    ReservedFlags(u16),
    #[error("run id mismatch")]
    RunMismatch,
    #[error("window mismatch: payload says {got}, expected {expected}")]
    WindowMismatch { expected: u64, got: u64 },
    #[error("uid mismatch: payload says {got}, expected {expected}")]
    UidMismatch { expected: u32, got: u32 },
    #[error("model/config hash mismatch")]
    ModelHashMismatch,
    #[error("{got} tensors, expected {expected}")]
    TensorCount { expected: usize, got: usize },
    #[error("{what} length {got} is above the limit of {max}")]
    LimitExceeded {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("declared lengths do not add up: header + table {table_len} + body {body_len} + trailer != {total} bytes")]
    LengthMismatch {
        table_len: u64,
        body_len: u64,
        total: usize,
    },
    #[error("bad signature")]
    BadSignature,
    #[error("body hash does not match")]
    BodyHash,
    #[error("tensor #{index}: name is not UTF-8")]
    NameNotUtf8 { index: usize },
    #[error("tensor #{index}: name {got:?}, expected {expected:?}")]
    TensorName {
        index: usize,
        expected: String,
        got: String,
    },
    #[error("tensor {tensor:?}: shape {got:?}, expected {expected:?}")]
    TensorShape {
        tensor: String,
        expected: Vec<usize>,
        got: Vec<u64>,
    },
    #[error("tensor {tensor:?}: {field} is {got}, expected {expected}")]
    Geometry {
        tensor: String,
        field: &'static str,
        expected: u64,
        got: u64,
    },
    #[error("tensor {tensor:?}: index mode {mode} not allowed here")]
    BadIndexMode { tensor: String, mode: u8 },
    #[error("tensor {tensor:?}: {section} section is {got} bytes, expected {expected}")]
    SectionLength {
        tensor: String,
        section: &'static str,
        expected: String,
        got: u64,
    },
    #[error("table is {got} bytes but its entries use {used}")]
    TableLength { got: u64, used: u64 },
    #[error("body is {got} bytes but the table's sections add up to {used}")]
    BodyLength { got: u64, used: u64 },
    #[error("tensor {tensor:?}: lookup[{bin}] is not finite ({value})")]
    NonFiniteLookup {
        tensor: String,
        bin: usize,
        value: f32,
    },
    #[error("tensor {tensor:?}: shift is not finite ({value})")]
    NonFiniteShift { tensor: String, value: f32 },
    /// `lookup[bin]` and `shift` are each finite but their sum, the value that code `bin`
    /// decodes to, is not (it overflows f32); checked for every bin, used or not.
    #[error("tensor {tensor:?}: code {bin} decodes to a non-finite value (lookup {lookup} + shift {shift} = {value})")]
    NonFiniteValue {
        tensor: String,
        bin: usize,
        lookup: f32,
        shift: f32,
        value: f32,
    },
    #[error(
        "tensor {tensor:?}: code {code} at position {position} is out of range for {bins} bins"
    )]
    CodeOutOfRange {
        tensor: String,
        position: usize,
        code: u8,
        bins: usize,
    },
    #[error("tensor {tensor:?}: non-zero padding bits in the {section} section")]
    BadPadding {
        tensor: String,
        section: &'static str,
    },
    #[error(
        "tensor {tensor:?}: chunk {chunk}: index {index} out of range for chunk length {chunk_len}"
    )]
    IndexOutOfRange {
        tensor: String,
        chunk: usize,
        index: usize,
        chunk_len: usize,
    },
    #[error("tensor {tensor:?}: chunk {chunk}: index {index} repeated or not ascending")]
    IndexOrder {
        tensor: String,
        chunk: usize,
        index: usize,
    },
    #[error("tensor {tensor:?}: entropy-coded index section truncated in chunk {chunk}")]
    IndexTruncated { tensor: String, chunk: usize },
    #[error("tensor {tensor:?}: entropy-coded index section has trailing data")]
    IndexTrailing { tensor: String },
    /// The payload given to [`encode`] does not fit the layout (a bug on the sending side).
    #[error("cannot encode tensor {tensor:?}: {reason}")]
    Unencodable { tensor: String, reason: String },
}

fn geometry_fields(t: &TensorLayout) -> (u32, u32) {
    match t.geom.layout {
        Layout::Vector { w, .. } => (1, w as u32),
        Layout::Matrix { h, w, .. } => (h as u32, w as u32),
    }
}

fn packed_mode(t: &TensorLayout) -> IndexMode {
    if t.geom.sends_all() {
        IndexMode::All
    } else if t.geom.index_bits() == 12 {
        IndexMode::Packed12
    } else {
        IndexMode::Packed16
    }
}

fn packed_index_len(t: &TensorLayout) -> usize {
    match packed_mode(t) {
        IndexMode::All => 0,
        IndexMode::Packed16 => t.geom.n_selected() * 2,
        _ => pack::packed12_len(t.geom.n_selected()),
    }
}

fn table_entry_len(t: &TensorLayout) -> usize {
    2 + t.name.len() + 1 + 4 * t.geom.shape.len() + 12 + 2 + 4
}

fn fixed_body_len(t: &TensorLayout, bins: usize) -> usize {
    4 * bins + 4 + t.geom.n_selected().div_ceil(4)
}

/// Size of the encoding of any payload for `layout` with packed indices (an upper bound for the
/// entropy-coded form too).
pub fn max_encoded_len(layout: &ModelLayout) -> usize {
    let bins = layout.config.bins;
    FIXED_HEADER_LEN
        + TRAILER_LEN
        + layout
            .tensors
            .iter()
            .map(|t| table_entry_len(t) + fixed_body_len(t, bins) + packed_index_len(t))
            .sum::<usize>()
}

/// The expected length of an honest upload for `layout` coded as `opts` says: with packed
/// indices exactly [`max_encoded_len`]; with Rice-coded ones, each sparse tensor's index
/// section as the coding of top-k positions spread uniformly over a chunk (16 sampled
/// chunks, the parameter chosen as the encoder does), never more than packed. For cost
/// estimates (`covenant model info --roles`); real payloads differ by a few percent.
pub fn expected_encoded_len(layout: &ModelLayout, opts: EncodeOptions) -> usize {
    let max = max_encoded_len(layout);
    if opts.index_coding == IndexCoding::Packed {
        return max;
    }
    let saved: usize = layout
        .tensors
        .iter()
        .filter(|t| packed_mode(t) != IndexMode::All)
        .map(|t| {
            let packed = packed_index_len(t);
            packed.saturating_sub(expected_rice_len(&t.geom).min(packed))
        })
        .sum();
    max - saved
}

/// Bytes of the Rice-coded indices of `g`'s chunks, each holding `k` uniformly spread positions.
fn expected_rice_len(g: &crate::TensorGeometry) -> usize {
    const SAMPLED: usize = 16;
    let (k, n) = (g.k, g.chunk_len);
    let mut state = (n as u64) << 32 ^ k as u64;
    let mut idx: Vec<u16> = Vec::with_capacity(k * SAMPLED);
    let mut chunk = std::collections::BTreeSet::new();
    for _ in 0..SAMPLED {
        chunk.clear();
        // Floyd's sampling of k distinct positions out of n.
        for j in n - k..n {
            let t = (splitmix(&mut state) % (j as u64 + 1)) as usize;
            if !chunk.insert(t) {
                chunk.insert(j);
            }
        }
        idx.extend(chunk.iter().map(|&i| i as u16));
    }
    let p = rice::choose_param(&idx, k, n);
    let bits = rice::cost_bits(&idx, k, p) as f64 / SAMPLED as f64 * g.n_chunks as f64;
    (bits / 8.0).ceil() as usize
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A constructor of `Unencodable` errors naming tensor `t`.
fn unencodable(t: &TensorLayout) -> impl Fn(String) -> WireError + '_ {
    move |reason| WireError::Unencodable {
        tensor: t.name.clone(),
        reason,
    }
}

/// Lengths of codes, indices and lookup against the tensor's geometry.
fn check_lengths(layout: &ModelLayout, i: usize, p: &TensorPayload) -> Result<(), WireError> {
    let t = &layout.tensors[i];
    let g = &t.geom;
    let bins = layout.config.bins;
    let err = unencodable(t);
    if p.codes.len() != g.n_selected() {
        return Err(err(format!(
            "{} codes, expected {}",
            p.codes.len(),
            g.n_selected()
        )));
    }
    let want = if g.sends_all() { 0 } else { g.n_selected() };
    if p.idx.len() != want {
        return Err(err(format!("{} indices, expected {want}", p.idx.len())));
    }
    if p.lookup.len() != bins {
        return Err(err(format!(
            "{} lookup entries, expected {bins}",
            p.lookup.len()
        )));
    }
    Ok(())
}

/// Lengths, then finite values, codes below `bins`, indices in range and ascending.
fn check_encodable(layout: &ModelLayout, i: usize, p: &TensorPayload) -> Result<(), WireError> {
    check_lengths(layout, i, p)?;
    let t = &layout.tensors[i];
    let g = &t.geom;
    let bins = layout.config.bins;
    let err = unencodable(t);
    if !p.shift.is_finite() || p.lookup.iter().any(|v| !v.is_finite()) {
        return Err(err("non-finite lookup or shift".into()));
    }
    check_decoded_finite(t, &p.lookup, p.shift)?;
    if let Some(c) = p.codes.iter().find(|&&c| c as usize >= bins) {
        return Err(err(format!("code {c} out of range")));
    }
    if !g.sends_all() {
        for (c, ch) in p.idx.chunks(g.k).enumerate() {
            let mut prev: i64 = -1;
            for &j in ch {
                if j as usize >= g.chunk_len || j as i64 <= prev {
                    return Err(err(format!(
                        "chunk {c}: index {j} out of range or not ascending"
                    )));
                }
                prev = j as i64;
            }
        }
    }
    Ok(())
}

/// Encodes and signs `payload` for `layout`.
pub fn encode(
    payload: &Payload,
    layout: &ModelLayout,
    key: &SigningKey,
    opts: EncodeOptions,
) -> Result<Vec<u8>, WireError> {
    encode_inner(payload, layout, key, opts, true)
}

/// Like [`encode`], but skips the checks that the values are encodable (finite lookup and
/// shift, codes below `bins`, indices in range and strictly ascending; lengths are still
/// checked). The result is framed and validly signed, so only the decoder's checks behind the
/// signature stand between it and the model: this exists to simulate a malicious miner
/// (`covenant miner --behaviour nan|bad-index`) and in tests, never for honest uploads.
/// Indices are always packed (the Rice coder needs ascending indices).
pub fn encode_unchecked(
    payload: &Payload,
    layout: &ModelLayout,
    key: &SigningKey,
) -> Result<Vec<u8>, WireError> {
    encode_inner(payload, layout, key, EncodeOptions::default(), false)
}

fn encode_inner(
    payload: &Payload,
    layout: &ModelLayout,
    key: &SigningKey,
    opts: EncodeOptions,
    check: bool,
) -> Result<Vec<u8>, WireError> {
    if payload.tensors.len() != layout.tensors.len() {
        return Err(WireError::TensorCount {
            expected: layout.tensors.len(),
            got: payload.tensors.len(),
        });
    }
    let bins = layout.config.bins;
    let mut table = Vec::new();
    let mut body = Vec::with_capacity(max_encoded_len(layout));
    let mut idx_buf = Vec::new();
    for (i, (t, p)) in layout.tensors.iter().zip(&payload.tensors).enumerate() {
        if check {
            check_encodable(layout, i, p)?;
        } else {
            check_lengths(layout, i, p)?;
        }
        let g = &t.geom;
        // Index section.
        idx_buf.clear();
        let mut mode = packed_mode(t);
        let mut param = 0u8;
        match mode {
            IndexMode::Packed12 => pack::pack12(&p.idx, &mut idx_buf),
            IndexMode::Packed16 => pack::pack16(&p.idx, &mut idx_buf),
            _ => {}
        }
        if check && opts.index_coding == IndexCoding::Entropy && mode != IndexMode::All {
            let pr = rice::choose_param(&p.idx, g.k, g.chunk_len);
            let bits = rice::cost_bits(&p.idx, g.k, pr);
            if (bits.div_ceil(8) as usize) < idx_buf.len() {
                idx_buf.clear();
                rice::encode(&p.idx, g.k, pr, &mut idx_buf);
                mode = IndexMode::Rice;
                param = pr;
            }
        }
        // Table entry.
        let (h, w) = geometry_fields(t);
        table.extend_from_slice(&(t.name.len() as u16).to_le_bytes());
        table.extend_from_slice(t.name.as_bytes());
        table.push(g.shape.len() as u8);
        for &d in &g.shape {
            table.extend_from_slice(&(d as u32).to_le_bytes());
        }
        table.extend_from_slice(&h.to_le_bytes());
        table.extend_from_slice(&w.to_le_bytes());
        table.extend_from_slice(&(g.k as u32).to_le_bytes());
        table.push(mode as u8);
        table.push(param);
        table.extend_from_slice(&(idx_buf.len() as u32).to_le_bytes());
        // Body.
        for &l in &p.lookup[..bins] {
            body.extend_from_slice(&l.to_le_bytes());
        }
        body.extend_from_slice(&p.shift.to_le_bytes());
        pack::pack2(&p.codes, &mut body);
        body.extend_from_slice(&idx_buf);
    }
    let mut out = Vec::with_capacity(FIXED_HEADER_LEN + table.len() + body.len() + TRAILER_LEN);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&payload.header.run_id);
    out.extend_from_slice(&payload.header.window.to_le_bytes());
    out.extend_from_slice(&payload.header.uid.to_le_bytes());
    out.extend_from_slice(&layout.hash);
    out.extend_from_slice(&(layout.tensors.len() as u32).to_le_bytes());
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    debug_assert_eq!(out.len(), FIXED_HEADER_LEN);
    out.extend_from_slice(&table);
    let signed_len = out.len();
    let hash = blake3::hash(&body);
    out.extend_from_slice(&body);
    out.extend_from_slice(hash.as_bytes());
    let mut msg = Vec::with_capacity(signed_len + 32);
    msg.extend_from_slice(&out[..signed_len]);
    msg.extend_from_slice(hash.as_bytes());
    let sig = key.sign(&msg);
    out.extend_from_slice(&sig.to_bytes());
    Ok(out)
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        let have = self.buf.len() - self.pos;
        if n > have {
            return Err(WireError::Truncated {
                what,
                offset: self.base + self.pos,
                need: n,
                have,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    fn f32(&mut self, what: &'static str) -> Result<f32, WireError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }
}

struct Entry {
    mode: IndexMode,
    param: u8,
    index_len: usize,
}

/// Decodes and validates a payload: size limits, magic, version, sender, model hash, lengths,
/// signature, body hash, tensor table against the expected model, finite lookup/shift, codes,
/// index ranges and order. Returns the first problem found.
pub fn decode(
    bytes: &[u8],
    expected: &ExpectedModel<'_>,
    key: &VerifyingKey,
    limits: &DecodeLimits,
) -> Result<Payload, WireError> {
    let layout = expected.layout;
    let bins = layout.config.bins;
    if bytes.len() > limits.max_bytes {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        base: 0,
    };
    let magic: [u8; 8] = r.array("magic")?;
    if magic != MAGIC {
        return Err(WireError::BadMagic(magic));
    }
    let version = r.u16("version")?;
    if version != VERSION {
        return Err(WireError::UnsupportedVersion(version));
    }
    let flags = r.u16("flags")?;
    if flags != 0 {
        return Err(WireError::ReservedFlags(flags));
    }
    let run_id: [u8; 32] = r.array("run id")?;
    let window = r.u64("window")?;
    let uid = r.u32("uid")?;
    let model_hash: [u8; 32] = r.array("model hash")?;
    let n_tensors = r.u32("tensor count")? as usize;
    let table_len = r.u32("table length")? as u64;
    let body_len = r.u64("body length")?;
    if run_id != expected.run_id {
        return Err(WireError::RunMismatch);
    }
    if window != expected.window {
        return Err(WireError::WindowMismatch {
            expected: expected.window,
            got: window,
        });
    }
    if uid != expected.uid {
        return Err(WireError::UidMismatch {
            expected: expected.uid,
            got: uid,
        });
    }
    if model_hash != layout.hash {
        return Err(WireError::ModelHashMismatch);
    }
    if n_tensors > limits.max_tensors {
        return Err(WireError::LimitExceeded {
            what: "tensor count",
            got: n_tensors,
            max: limits.max_tensors,
        });
    }
    if n_tensors != layout.tensors.len() {
        return Err(WireError::TensorCount {
            expected: layout.tensors.len(),
            got: n_tensors,
        });
    }
    let total = (FIXED_HEADER_LEN as u64)
        .checked_add(table_len)
        .and_then(|v| v.checked_add(body_len))
        .and_then(|v| v.checked_add(TRAILER_LEN as u64));
    if total != Some(bytes.len() as u64) {
        return Err(WireError::LengthMismatch {
            table_len,
            body_len,
            total: bytes.len(),
        });
    }
    let signed_end = FIXED_HEADER_LEN + table_len as usize;
    let body_end = signed_end + body_len as usize;
    let body = &bytes[signed_end..body_end];
    let hash_bytes = &bytes[body_end..body_end + 32];
    let mut sig = [0u8; 64];
    sig.copy_from_slice(&bytes[body_end + 32..]);

    // Signature over header + table + body hash, then the body hash itself.
    let mut msg = Vec::with_capacity(signed_end + 32);
    msg.extend_from_slice(&bytes[..signed_end]);
    msg.extend_from_slice(hash_bytes);
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
        .map_err(|_| WireError::BadSignature)?;
    if blake3::hash(body).as_bytes() != hash_bytes {
        return Err(WireError::BodyHash);
    }

    // Tensor table.
    let mut tr = Reader {
        buf: &bytes[FIXED_HEADER_LEN..signed_end],
        pos: 0,
        base: FIXED_HEADER_LEN,
    };
    let mut entries = Vec::with_capacity(n_tensors);
    let mut body_used: u64 = 0;
    for (index, t) in layout.tensors.iter().enumerate() {
        let g = &t.geom;
        let name_len = tr.u16("tensor name length")? as usize;
        if name_len > limits.max_name_len {
            return Err(WireError::LimitExceeded {
                what: "tensor name",
                got: name_len,
                max: limits.max_name_len,
            });
        }
        let name = tr.take(name_len, "tensor name")?;
        let name = std::str::from_utf8(name).map_err(|_| WireError::NameNotUtf8 { index })?;
        if name != t.name {
            return Err(WireError::TensorName {
                index,
                expected: t.name.clone(),
                got: name.to_string(),
            });
        }
        let rank = tr.u8("tensor rank")? as usize;
        if rank != g.shape.len() {
            return Err(WireError::Geometry {
                tensor: t.name.clone(),
                field: "rank",
                expected: g.shape.len() as u64,
                got: rank as u64,
            });
        }
        let mut dims = [0u64; 2];
        for d in dims.iter_mut().take(rank) {
            *d = tr.u32("tensor dimension")? as u64;
        }
        if dims[..rank]
            .iter()
            .zip(&g.shape)
            .any(|(&a, &b)| a != b as u64)
        {
            return Err(WireError::TensorShape {
                tensor: t.name.clone(),
                expected: g.shape.clone(),
                got: dims[..rank].to_vec(),
            });
        }
        let (eh, ew) = geometry_fields(t);
        for (field, want) in [
            ("chunk h", eh as u64),
            ("chunk w", ew as u64),
            ("k", g.k as u64),
        ] {
            let got = tr.u32(field)? as u64;
            if got != want {
                return Err(WireError::Geometry {
                    tensor: t.name.clone(),
                    field,
                    expected: want,
                    got,
                });
            }
        }
        let mode_byte = tr.u8("index mode")?;
        let param = tr.u8("index parameter")?;
        let index_len = tr.u32("index section length")? as u64;
        let packed = packed_mode(t);
        let mode = match mode_byte {
            0 if packed == IndexMode::All => IndexMode::All,
            1 if packed == IndexMode::Packed12 => IndexMode::Packed12,
            2 if packed == IndexMode::Packed16 => IndexMode::Packed16,
            3 if packed != IndexMode::All => IndexMode::Rice,
            m => {
                return Err(WireError::BadIndexMode {
                    tensor: t.name.clone(),
                    mode: m,
                })
            }
        };
        if mode != IndexMode::Rice && param != 0 || param > 15 {
            return Err(WireError::Geometry {
                tensor: t.name.clone(),
                field: "index parameter",
                expected: 0,
                got: param as u64,
            });
        }
        let plen = packed_index_len(t) as u64;
        let ok = if mode == IndexMode::Rice {
            index_len < plen
        } else {
            index_len == plen
        };
        if !ok {
            return Err(WireError::SectionLength {
                tensor: t.name.clone(),
                section: "index",
                expected: if mode == IndexMode::Rice {
                    format!("< {plen}")
                } else {
                    plen.to_string()
                },
                got: index_len,
            });
        }
        body_used += fixed_body_len(t, bins) as u64 + index_len;
        entries.push(Entry {
            mode,
            param,
            index_len: index_len as usize,
        });
    }
    if tr.pos as u64 != table_len {
        return Err(WireError::TableLength {
            got: table_len,
            used: tr.pos as u64,
        });
    }
    if body_used != body_len {
        return Err(WireError::BodyLength {
            got: body_len,
            used: body_used,
        });
    }

    // Body.
    let mut br = Reader {
        buf: body,
        pos: 0,
        base: signed_end,
    };
    let mut tensors = Vec::with_capacity(n_tensors);
    for (t, e) in layout.tensors.iter().zip(&entries) {
        tensors.push(decode_tensor(t, e, bins, &mut br)?);
    }
    Ok(Payload {
        header: PayloadHeader {
            run_id,
            window,
            uid,
        },
        tensors,
    })
}

/// Every value a code can decode to, `lookup[b] + shift` in f32, must be finite.
fn check_decoded_finite(t: &TensorLayout, lookup: &[f32], shift: f32) -> Result<(), WireError> {
    match lookup.iter().position(|&l| !(l + shift).is_finite()) {
        None => Ok(()),
        Some(bin) => Err(WireError::NonFiniteValue {
            tensor: t.name.clone(),
            bin,
            lookup: lookup[bin],
            shift,
            value: lookup[bin] + shift,
        }),
    }
}

fn decode_tensor(
    t: &TensorLayout,
    e: &Entry,
    bins: usize,
    br: &mut Reader<'_>,
) -> Result<TensorPayload, WireError> {
    let g = &t.geom;
    let mut lookup = Vec::with_capacity(bins);
    for bin in 0..bins {
        let v = br.f32("lookup")?;
        if !v.is_finite() {
            return Err(WireError::NonFiniteLookup {
                tensor: t.name.clone(),
                bin,
                value: v,
            });
        }
        lookup.push(v);
    }
    let shift = br.f32("shift")?;
    if !shift.is_finite() {
        return Err(WireError::NonFiniteShift {
            tensor: t.name.clone(),
            value: shift,
        });
    }
    check_decoded_finite(t, &lookup, shift)?;
    let n = g.n_selected();
    let code_bytes = br.take(n.div_ceil(4), "codes")?;
    let mut codes = Vec::with_capacity(n);
    if !pack::unpack2(code_bytes, n, &mut codes) {
        return Err(WireError::BadPadding {
            tensor: t.name.clone(),
            section: "codes",
        });
    }
    if bins < 4 {
        if let Some(position) = codes.iter().position(|&c| c as usize >= bins) {
            return Err(WireError::CodeOutOfRange {
                tensor: t.name.clone(),
                position,
                code: codes[position],
                bins,
            });
        }
    }
    let idx_bytes = br.take(e.index_len, "indices")?;
    let mut idx = Vec::new();
    match e.mode {
        IndexMode::All => {}
        IndexMode::Packed12 | IndexMode::Packed16 => {
            idx.reserve(n);
            if e.mode == IndexMode::Packed12 {
                if !pack::unpack12(idx_bytes, n, &mut idx) {
                    return Err(WireError::BadPadding {
                        tensor: t.name.clone(),
                        section: "indices",
                    });
                }
            } else {
                pack::unpack16(idx_bytes, &mut idx);
            }
            for (chunk, ch) in idx.chunks(g.k).enumerate() {
                let mut prev: i64 = -1;
                for &j in ch {
                    if j as usize >= g.chunk_len {
                        return Err(WireError::IndexOutOfRange {
                            tensor: t.name.clone(),
                            chunk,
                            index: j as usize,
                            chunk_len: g.chunk_len,
                        });
                    }
                    if j as i64 <= prev {
                        return Err(WireError::IndexOrder {
                            tensor: t.name.clone(),
                            chunk,
                            index: j as usize,
                        });
                    }
                    prev = j as i64;
                }
            }
        }
        IndexMode::Rice => {
            idx.reserve(n);
            rice::decode(idx_bytes, g.n_chunks, g.k, g.chunk_len, e.param, &mut idx).map_err(
                |err| match err {
                    rice::RiceError::Truncated { chunk } => WireError::IndexTruncated {
                        tensor: t.name.clone(),
                        chunk,
                    },
                    rice::RiceError::IndexOutOfRange { chunk, index } => {
                        WireError::IndexOutOfRange {
                            tensor: t.name.clone(),
                            chunk,
                            index,
                            chunk_len: g.chunk_len,
                        }
                    }
                    rice::RiceError::TrailingData => WireError::IndexTrailing {
                        tensor: t.name.clone(),
                    },
                },
            )?;
        }
    }
    Ok(TensorPayload {
        idx,
        codes,
        lookup,
        shift,
    })
}
