//! Safetensors files of named fp32 tensors, written atomically (temp name, then rename).

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};

use crate::error::{ModelError, Result};

/// The safetensors header (its 8-byte length, then the JSON padded to 8 bytes) of fp32 tensors
/// laid out back to back in this order, with `format: pt` metadata (Hugging Face
/// `transformers` needs it). One home of the layout: the trainer's files and the nodes'
/// checkpoints both use it.
pub fn safetensors_header(tensors: &[(&str, &[usize])]) -> std::result::Result<Vec<u8>, String> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 4 * n]}),
        );
        offset += 4 * n;
    }
    let mut hbytes = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| format!("cannot encode header: {e}"))?;
    while hbytes.len() % 8 != 0 {
        hbytes.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + hbytes.len());
    out.extend_from_slice(&(hbytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&hbytes);
    Ok(out)
}

/// A whole safetensors file of flat fp32 tensors (name, shape, values), as bytes.
pub fn encode_safetensors(
    tensors: &[(&str, &[usize], &[f32])],
) -> std::result::Result<Vec<u8>, String> {
    let specs: Vec<(&str, &[usize])> = tensors.iter().map(|(n, s, _)| (*n, *s)).collect();
    let mut out = safetensors_header(&specs)?;
    for (name, shape, data) in tensors {
        if data.len() != shape.iter().product::<usize>() {
            return Err(format!("{name}: {} values for shape {shape:?}", data.len()));
        }
        out.reserve(4 * data.len());
        for v in *data {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Reads the tensors `expected` (name, shape) from safetensors bytes as flat fp32 values, in
/// order. Every expected tensor must be present with dtype F32 and the given shape; unknown
/// names are rejected, except those listed in `ignorable`.
pub fn decode_safetensors(
    bytes: &[u8],
    expected: &[(String, Vec<usize>)],
    ignorable: &[&str],
) -> std::result::Result<Vec<Vec<f32>>, String> {
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("not a valid safetensors file: {e}"))?;
    for name in st.names() {
        let name: &str = name;
        if !expected.iter().any(|(n, _)| n == name) && !ignorable.contains(&name) {
            return Err(format!("unexpected tensor `{name}`"));
        }
    }
    let mut out = Vec::with_capacity(expected.len());
    for (name, shape) in expected {
        let view = st
            .tensor(name)
            .map_err(|_| format!("missing tensor `{name}`"))?;
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!(
                "tensor `{name}` has dtype {:?}, expected F32",
                view.dtype()
            ));
        }
        if view.shape() != shape.as_slice() {
            return Err(format!(
                "tensor `{name}` has shape {:?}, expected {:?}",
                view.shape(),
                shape
            ));
        }
        let data = view.data();
        out.push(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    Ok(out)
}

/// Write `tensors` (name, shape, tensor) to `path` as safetensors, via `path.tmp` + rename.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &Tensor)],
) -> Result<()> {
    let specs: Vec<(&str, &[usize])> = tensors
        .iter()
        .map(|(n, s, _)| (n.as_str(), s.as_slice()))
        .collect();
    let head = safetensors_header(&specs).map_err(|e| ModelError::ckpt(path, e))?;
    let tmp = tmp_path(path);
    let file = fs::File::create(&tmp).map_err(|e| ModelError::io(&tmp, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let io = |e| ModelError::io(&tmp, e);
    w.write_all(&head).map_err(io)?;
    for (name, shape, t) in tensors {
        let n: usize = shape.iter().product();
        let cpu = t
            .f_detach()?
            .f_to_device(Device::Cpu)?
            .f_to_kind(Kind::Float)?
            .f_contiguous()?;
        if cpu.numel() != n {
            return Err(ModelError::ParamMismatch(format!(
                "{name}: tensor has {} values, shape says {n}",
                cpu.numel()
            )));
        }
        let mut buf = vec![0f32; n];
        cpu.f_copy_data(&mut buf, n)?;
        let mut bytes = Vec::with_capacity(4 * n);
        for v in &buf {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&bytes).map_err(io)?;
    }
    let file = w
        .into_inner()
        .map_err(|e| ModelError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(|e| ModelError::io(&tmp, e))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

/// Write bytes to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Read the tensors `expected` (name, shape) from a safetensors file as CPU fp32 tensors, in order.
/// Every expected tensor must be present with dtype F32 and the given shape; unknown names are
/// rejected, except those listed in `ignorable`.
pub(crate) fn read_safetensors(
    path: &Path,
    expected: &[(String, Vec<usize>)],
    ignorable: &[&str],
) -> Result<Vec<Tensor>> {
    let bytes = fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let flat =
        decode_safetensors(&bytes, expected, ignorable).map_err(|e| ModelError::ckpt(path, e))?;
    let mut out = Vec::with_capacity(expected.len());
    for ((_, shape), v) in expected.iter().zip(flat) {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        out.push(Tensor::f_from_slice(&v)?.f_view(dims.as_slice())?);
    }
    Ok(out)
}
