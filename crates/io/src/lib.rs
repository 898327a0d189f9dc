//! `tgcnet-io`: the files every other crate writes or reads without needing a model: named host tensors
//! in safetensors files ([`TensorMap`]), and [`write_atomic`], the one way the workspace replaces a file
//! (checkpoints, run configs, knowledge files), so that a reader or a run killed mid-write never sees a
//! partial file.
//!
//! It knows nothing of burn or CLIP; moving parameters between these maps and burn modules, and the
//! OpenCLIP/HF rename table, stay in `tgcnet-clip` (`weights.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};

/// Errors of tensor files and atomic writes. Every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A file or directory operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Shown in the message, and deliberately not the error's `source()`: a report printing the
        /// whole chain would repeat the OS message.
        error: std::io::Error,
    },
    /// A file that is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A tensor of a dtype we do not read.
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// The dtype in the file.
        dtype: String,
    },
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, IoError>;

fn io_err(path: &Path, error: std::io::Error) -> IoError {
    IoError::Io {
        path: path.into(),
        error,
    }
}

fn st_err(path: &Path, e: impl std::fmt::Display) -> IoError {
    IoError::Safetensors {
        path: path.into(),
        message: e.to_string(),
    }
}

/// A host tensor: row-major f32 values and a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// A tensor of `shape` holding `data` (their sizes must agree).
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Transpose of a 2-D tensor.
    pub fn t(&self) -> HostTensor {
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                out[j * r + i] = self.data[i * c + j];
            }
        }
        HostTensor::new(vec![c, r], out)
    }

    /// Rows `start..start+len` of the first axis.
    pub fn rows(&self, start: usize, len: usize) -> HostTensor {
        let row: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = len;
        HostTensor::new(shape, self.data[start * row..(start + len) * row].to_vec())
    }
}

/// Tensors by name, as read from a file; records which names were taken.
#[derive(Debug, Default)]
pub struct TensorMap {
    /// The file the tensors were read from (named in errors).
    pub source: PathBuf,
    /// The tensors, by key.
    pub tensors: BTreeMap<String, HostTensor>,
}

impl TensorMap {
    /// Reads every tensor of a safetensors file as f32 (f32, f16 and bf16 are accepted).
    pub fn read_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        Self::from_safetensors_bytes(&bytes, path)
    }

    /// The `__metadata__` strings of a safetensors file (empty when it has none).
    pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
        let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| st_err(path, e))?;
        Ok(meta
            .metadata()
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default())
    }

    /// Parses safetensors bytes like [`Self::read_safetensors`]; `path` is only for messages.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| st_err(path, e))?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let raw = view.data();
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Dtype::F16 => raw
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => raw
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect(),
                // Integer buffers (HF's `position_ids`) carry no weights; they are on the ignore list.
                Dtype::I64 | Dtype::I32 => Vec::new(),
                other => {
                    return Err(IoError::Dtype {
                        path: path.into(),
                        key: name,
                        dtype: format!("{other:?}"),
                    });
                }
            };
            let shape = view.shape().to_vec();
            if !data.is_empty() || shape.iter().product::<usize>() == 0 {
                tensors.insert(name, HostTensor::new(shape, data));
            } else {
                tensors.insert(name, HostTensor { shape, data });
            }
        }
        Ok(Self {
            source: path.into(),
            tensors,
        })
    }

    /// Writes tensors as f32 (or f16) safetensors, atomically ([`write_atomic`]).
    pub fn write_safetensors(
        tensors: &BTreeMap<String, HostTensor>,
        metadata: Option<HashMap<String, String>>,
        path: &Path,
        f16: bool,
    ) -> Result<()> {
        let mut bufs: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
        for (k, t) in tensors {
            let bytes: Vec<u8> = if f16 {
                t.data
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect()
            } else {
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            bufs.push((k.clone(), t.shape.clone(), bytes));
        }
        let dtype = if f16 { Dtype::F16 } else { Dtype::F32 };
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = bufs
            .iter()
            .map(|(k, s, b)| {
                safetensors::tensor::TensorView::new(dtype, s.clone(), b)
                    .map(|v| (k.clone(), v))
                    .map_err(|e| st_err(path, e))
            })
            .collect::<Result<_>>()?;
        let bytes = safetensors::serialize(views, metadata).map_err(|e| st_err(path, e))?;
        write_atomic(path, &bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory (synced, then renamed over
/// `path`), so that a reader, or a run killed mid-write, sees the old file or the new one, never a
/// partial one. The temporary file is removed when a step fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
    })();
    if written.is_err() {
        // Best effort: the error that matters is the one returned.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_round_trip_atomically() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("sub/t.safetensors");
        let mut tensors = BTreeMap::new();
        tensors.insert(
            "a.b".to_string(),
            HostTensor::new(vec![2, 3], (0..6).map(|v| v as f32).collect()),
        );
        let meta = HashMap::from([("format".to_string(), "x".to_string())]);
        TensorMap::write_safetensors(&tensors, Some(meta), &path, false).expect("write");
        let read = TensorMap::read_safetensors(&path).expect("read");
        assert_eq!(read.tensors, tensors);
        assert_eq!(
            TensorMap::read_metadata(&path).expect("meta")["format"],
            "x"
        );
        TensorMap::write_safetensors(&tensors, None, &path, true).expect("f16");
        assert_eq!(
            TensorMap::read_safetensors(&path).expect("read").tensors,
            tensors
        );
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("dir")
            .collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
        assert_eq!(tensors["a.b"].t().t(), tensors["a.b"]);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let bad = dir.path().join("bad.safetensors");
        write_atomic(&bad, b"not safetensors").expect("write");
        let e = TensorMap::read_safetensors(&bad).expect_err("invalid");
        assert!(e.to_string().starts_with(&bad.display().to_string()), "{e}");
        let blocked = bad.join("child");
        assert!(write_atomic(&blocked, b"x").is_err());
    }
}
