//! Reading documents from corpus files: plain text, JSONL (`text` field) and Parquet (`text`
//! column), each optionally zstd-compressed (`.zst`, not for Parquet, which compresses inside).
//!
//! Document boundaries: one JSONL line or one Parquet row is one document. A plain-text file is
//! cut into documents at the first blank line after every [`TEXT_DOC_TARGET`] bytes (so that a
//! train/validation split by document has something to choose from), and at a line boundary past
//! [`MAX_DOCUMENT_BYTES`].

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use parquet::basic::Type as PhysicalType;
use parquet::column::reader::ColumnReader;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::{DataError, Result};

/// The largest document (and JSONL line) accepted.
pub const MAX_DOCUMENT_BYTES: usize = 64 << 20;
/// Plain text is cut into documents of about this size, at paragraph boundaries.
pub const TEXT_DOC_TARGET: usize = 64 << 10;

/// The format of an input file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// `.txt` (UTF-8).
    Text,
    /// `.jsonl` / `.json` lines with a string field `text`.
    Jsonl,
    /// `.parquet` with a string column `text`.
    Parquet,
}

/// One input file.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: InputFormat,
    /// `.zst` compressed (text and JSONL only).
    pub zstd: bool,
    /// Size on disk.
    pub bytes: u64,
}

impl InputFile {
    /// Classifies `path` by its name; `None` if it is no supported format.
    pub fn from_path(path: &Path) -> Option<(InputFormat, bool)> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (stem, zstd) = match name.strip_suffix(".zst") {
            Some(s) => (s.to_string(), true),
            None => (name, false),
        };
        let format = if stem.ends_with(".txt") {
            InputFormat::Text
        } else if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
            InputFormat::Jsonl
        } else if stem.ends_with(".parquet") && !zstd {
            InputFormat::Parquet
        } else {
            return None;
        };
        Some((format, zstd))
    }
}

/// The input files under `path`: the file itself (an error if its format is unknown), or every
/// supported file below a directory, recursively, in byte order of their paths. Other files in a
/// directory are ignored.
pub fn list_inputs(path: &Path) -> Result<Vec<InputFile>> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let mut out = Vec::new();
    if meta.is_file() {
        let (format, zstd) =
            InputFile::from_path(path).ok_or_else(|| DataError::UnsupportedInput {
                path: path.to_path_buf(),
            })?;
        out.push(InputFile {
            path: path.to_path_buf(),
            format,
            zstd,
            bytes: meta.len(),
        });
        return Ok(out);
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            let p = entry.path();
            let ft = entry.file_type().map_err(|e| DataError::io(&p, e))?;
            if ft.is_dir() {
                stack.push(p);
            } else if let Some((format, zstd)) = InputFile::from_path(&p) {
                let bytes = std::fs::metadata(&p)
                    .map_err(|e| DataError::io(&p, e))?
                    .len();
                out.push(InputFile {
                    path: p,
                    format,
                    zstd,
                    bytes,
                });
            }
        }
    }
    out.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_encoded_bytes()
            .cmp(b.path.as_os_str().as_encoded_bytes())
    });
    if out.is_empty() {
        return Err(DataError::NoDocuments {
            path: path.to_path_buf(),
        });
    }
    Ok(out)
}

/// Calls `f` with every non-empty document of `file`, in file order. `on_bytes` is told how many
/// bytes of the file (as stored) were consumed, for progress reporting.
pub fn for_each_document(
    file: &InputFile,
    on_bytes: &mut dyn FnMut(u64),
    f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let path = &file.path;
    match file.format {
        InputFormat::Parquet => read_parquet(path, on_bytes, f),
        InputFormat::Text | InputFormat::Jsonl => {
            let raw = File::open(path).map_err(|e| DataError::io(path, e))?;
            let counting = CountingReader {
                inner: raw,
                on_bytes,
            };
            let reader: Box<dyn Read + '_> = if file.zstd {
                Box::new(
                    zstd::stream::read::Decoder::new(counting)
                        .map_err(|e| DataError::io(path, e))?,
                )
            } else {
                Box::new(counting)
            };
            let mut reader = BufReader::with_capacity(1 << 20, reader);
            if file.format == InputFormat::Text {
                read_text(path, &mut reader, f)
            } else {
                read_jsonl(path, &mut reader, f)
            }
        }
    }
}

struct CountingReader<'a, R> {
    inner: R,
    on_bytes: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.on_bytes)(n as u64);
        Ok(n)
    }
}

/// Reads one line (with its `\n`) into `buf`, refusing lines above `limit` bytes. Returns false
/// at end of input.
fn read_line_limited(
    path: &Path,
    r: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<bool> {
    buf.clear();
    let n = r
        .take(limit as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| DataError::io(path, e))?;
    if n > limit {
        return Err(DataError::DocumentTooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(n > 0)
}

fn read_text(
    path: &Path,
    r: &mut dyn BufRead,
    f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let mut doc: Vec<u8> = Vec::new();
    let mut line = Vec::new();
    let emit = |doc: &mut Vec<u8>, f: &mut dyn FnMut(String) -> Result<()>| -> Result<()> {
        let bytes = std::mem::take(doc);
        let text = String::from_utf8(bytes).map_err(|_| DataError::NotUtf8 {
            path: path.to_path_buf(),
        })?;
        if !text.trim().is_empty() {
            f(text)?;
        }
        Ok(())
    };
    while read_line_limited(path, r, &mut line, MAX_DOCUMENT_BYTES)? {
        let blank = line.iter().all(|b| b.is_ascii_whitespace());
        if doc.len() + line.len() > MAX_DOCUMENT_BYTES {
            emit(&mut doc, f)?;
        }
        doc.extend_from_slice(&line);
        if blank && doc.len() >= TEXT_DOC_TARGET {
            emit(&mut doc, f)?;
        }
    }
    emit(&mut doc, f)
}

#[derive(serde::Deserialize)]
struct JsonlRow {
    text: Option<serde_json::Value>,
}

fn read_jsonl(
    path: &Path,
    r: &mut dyn BufRead,
    f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let mut line = Vec::new();
    let mut n: u64 = 0;
    while read_line_limited(path, r, &mut line, MAX_DOCUMENT_BYTES)? {
        n += 1;
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let row: JsonlRow = serde_json::from_slice(&line).map_err(|e| DataError::Jsonl {
            path: path.to_path_buf(),
            line: n,
            reason: e.to_string(),
        })?;
        match row.text {
            Some(serde_json::Value::String(s)) => {
                if !s.trim().is_empty() {
                    f(s)?;
                }
            }
            Some(_) => {
                return Err(DataError::Jsonl {
                    path: path.to_path_buf(),
                    line: n,
                    reason: "field \"text\" is not a string".into(),
                })
            }
            None => {
                return Err(DataError::Jsonl {
                    path: path.to_path_buf(),
                    line: n,
                    reason: "no field \"text\"".into(),
                })
            }
        }
    }
    Ok(())
}

fn read_parquet(
    path: &Path,
    on_bytes: &mut dyn FnMut(u64),
    f: &mut dyn FnMut(String) -> Result<()>,
) -> Result<()> {
    let perr = |e: parquet::errors::ParquetError| DataError::Parquet {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(perr)?;
    let meta = reader.metadata();
    let schema = meta.file_metadata().schema_descr();
    let col = (0..schema.num_columns())
        .find(|&i| {
            let c = schema.column(i);
            c.path().parts().len() == 1 && c.name() == "text"
        })
        .ok_or_else(|| DataError::Parquet {
            path: path.to_path_buf(),
            reason: "no top-level column \"text\"".into(),
        })?;
    if schema.column(col).physical_type() != PhysicalType::BYTE_ARRAY {
        return Err(DataError::Parquet {
            path: path.to_path_buf(),
            reason: "column \"text\" is not a string column".into(),
        });
    }
    const BATCH: usize = 256;
    for rg in 0..meta.num_row_groups() {
        let rg_reader = reader.get_row_group(rg).map_err(perr)?;
        let mut col_reader = match rg_reader.get_column_reader(col).map_err(perr)? {
            ColumnReader::ByteArrayColumnReader(r) => r,
            _ => {
                return Err(DataError::Parquet {
                    path: path.to_path_buf(),
                    reason: "column \"text\" is not a string column".into(),
                })
            }
        };
        let mut values = Vec::with_capacity(BATCH);
        let mut defs = Vec::with_capacity(BATCH);
        loop {
            values.clear();
            defs.clear();
            let (records, _, _) = col_reader
                .read_records(BATCH, Some(&mut defs), None, &mut values)
                .map_err(perr)?;
            if records == 0 {
                break;
            }
            for v in values.drain(..) {
                if v.len() > MAX_DOCUMENT_BYTES {
                    return Err(DataError::DocumentTooLarge {
                        path: path.to_path_buf(),
                        limit: MAX_DOCUMENT_BYTES,
                    });
                }
                let s = std::str::from_utf8(v.data()).map_err(|_| DataError::NotUtf8 {
                    path: path.to_path_buf(),
                })?;
                if !s.trim().is_empty() {
                    f(s.to_string())?;
                }
            }
        }
        on_bytes(u64::try_from(meta.row_group(rg).compressed_size()).unwrap_or(0));
    }
    Ok(())
}
