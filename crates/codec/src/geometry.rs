use crate::config::CodecConfig;
use crate::error::CodecError;

/// Largest divisor of `n` that is ≤ `cap` (1 when `n` has none in 2..=cap; `n` itself when n ≤ cap).
pub fn largest_divisor_at_most(n: usize, cap: usize) -> usize {
    if n == 0 {
        return 1;
    }
    let mut d = cap.min(n).max(1);
    while d > 1 {
        #[allow(clippy::manual_is_multiple_of)] // keeps the 1.85 MSRV
        if n % d == 0 {
            return d;
        }
        d -= 1;
    }
    1
}

/// How a tensor is cut into chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 1-D `[len]` cut into runs of `w`.
    Vector { len: usize, w: usize },
    /// 2-D `[rows, cols]` cut into `h×w` tiles, flattened row-major inside the tile (index r·w + c);
    /// tiles are numbered row-major over the `[rows/h, cols/w]` tile grid.
    Matrix {
        rows: usize,
        cols: usize,
        h: usize,
        w: usize,
    },
}

/// Chunk geometry of one tensor under a [`CodecConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorGeometry {
    pub shape: Vec<usize>,
    pub layout: Layout,
    /// Values per chunk (h·w or w).
    pub chunk_len: usize,
    pub n_chunks: usize,
    /// Values selected per chunk. `k == chunk_len` means every value is sent and no indices travel
    /// ("all" mode); this includes the dense fallback for a chunk length of 1.
    pub k: usize,
}

impl TensorGeometry {
    pub fn new(cfg: &CodecConfig, name: &str, shape: &[usize]) -> Result<Self, CodecError> {
        let unsupported = |reason| CodecError::UnsupportedShape {
            tensor: name.to_string(),
            shape: shape.to_vec(),
            reason,
        };
        if shape.contains(&0) {
            return Err(unsupported("zero-sized dimension"));
        }
        if shape.iter().any(|&d| d > u32::MAX as usize) {
            return Err(unsupported("dimension above u32::MAX"));
        }
        let layout = match *shape {
            [len] => Layout::Vector {
                len,
                w: largest_divisor_at_most(len, cfg.chunk),
            },
            [rows, cols] => {
                if rows.checked_mul(cols).is_none() {
                    return Err(unsupported("element count overflows"));
                }
                Layout::Matrix {
                    rows,
                    cols,
                    h: largest_divisor_at_most(rows, cfg.chunk),
                    w: largest_divisor_at_most(cols, cfg.chunk),
                }
            }
            _ => return Err(unsupported("only 1-D and 2-D tensors are chunked")),
        };
        let (numel, chunk_len) = match layout {
            Layout::Vector { len, w } => (len, w),
            Layout::Matrix { rows, cols, h, w } => (rows * cols, h * w),
        };
        let k = if chunk_len == 1 {
            1
        } else {
            let k = cfg.topk.min(chunk_len).max(2);
            k - (k % 2)
        };
        Ok(Self {
            shape: shape.to_vec(),
            layout,
            chunk_len,
            n_chunks: numel / chunk_len,
            k,
        })
    }

    pub fn numel(&self) -> usize {
        self.n_chunks * self.chunk_len
    }

    /// Every value of every chunk is sent (no indices on the wire).
    pub fn sends_all(&self) -> bool {
        self.k == self.chunk_len
    }

    /// Number of values sent for this tensor.
    pub fn n_selected(&self) -> usize {
        self.n_chunks * self.k
    }

    /// Bits per in-chunk index when indices are bit-packed (12 for chunks up to 4096 values).
    pub fn index_bits(&self) -> u32 {
        if self.chunk_len <= 4096 {
            12
        } else {
            16
        }
    }

    /// Flat offset of element 0 of chunk `c`, the row stride, and the chunk's row width:
    /// in-chunk index `j` lives at `base + (j / w) * stride + j % w`.
    #[inline]
    pub fn chunk_base(&self, c: usize) -> (usize, usize, usize) {
        match self.layout {
            Layout::Vector { w, .. } => (c * w, w, w),
            Layout::Matrix { cols, h, w, .. } => {
                let tiles_x = cols / w;
                let (ty, tx) = (c / tiles_x, c % tiles_x);
                (ty * h * cols + tx * w, cols, w)
            }
        }
    }

    /// Offset of in-chunk index `j` relative to the chunk base, for every `j` (a lookup table).
    pub fn in_chunk_offsets(&self) -> Vec<u32> {
        let (_, stride, w) = self.chunk_base(0);
        (0..self.chunk_len)
            .map(|j| ((j / w) * stride + j % w) as u32)
            .collect()
    }
}

/// A named tensor with its geometry.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorLayout {
    pub name: String,
    pub geom: TensorGeometry,
}

/// The parameter tensors of a model, in wire order, with the codec config and their hash.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelLayout {
    pub config: CodecConfig,
    pub tensors: Vec<TensorLayout>,
    /// blake3 over the codec config and the tensor names and shapes: the wire header's model hash.
    pub hash: [u8; 32],
}

impl ModelLayout {
    pub fn new<'a, I, S>(config: CodecConfig, tensors: I) -> Result<Self, CodecError>
    where
        I: IntoIterator<Item = (S, &'a [usize])>,
        S: Into<String>,
    {
        config.validate()?;
        let mut out: Vec<TensorLayout> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, shape) in tensors {
            let name: String = name.into();
            if !seen.insert(name.clone()) {
                return Err(CodecError::DuplicateName(name));
            }
            let geom = TensorGeometry::new(&config, &name, shape)?;
            out.push(TensorLayout { name, geom });
        }
        let hash = Self::compute_hash(&config, &out);
        Ok(Self {
            config,
            tensors: out,
            hash,
        })
    }

    fn compute_hash(cfg: &CodecConfig, tensors: &[TensorLayout]) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"covenant-codec model layout v1\0");
        h.update(&(cfg.topk as u64).to_le_bytes());
        h.update(&(cfg.chunk as u64).to_le_bytes());
        h.update(&(cfg.bins as u64).to_le_bytes());
        h.update(&cfg.range_sigma.to_bits().to_le_bytes());
        h.update(&cfg.ef_decay.to_bits().to_le_bytes());
        h.update(&(tensors.len() as u64).to_le_bytes());
        for t in tensors {
            h.update(&(t.name.len() as u64).to_le_bytes());
            h.update(t.name.as_bytes());
            h.update(&(t.geom.shape.len() as u64).to_le_bytes());
            for &d in &t.geom.shape {
                h.update(&(d as u64).to_le_bytes());
            }
        }
        *h.finalize().as_bytes()
    }

    pub fn numel(&self) -> usize {
        self.tensors.iter().map(|t| t.geom.numel()).sum()
    }
}
