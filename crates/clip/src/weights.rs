//! Named tensors in and out of burn modules.
//!
//! A parameter's name is its module path (struct field names joined by `.`), written once where the
//! parameter is created. Two key styles exist: `Burn` is that path as is (our checkpoints); `Torch` is what
//! PyTorch calls the same tensor: LayerNorm `gamma`/`beta` are `weight`/`bias`, and a Linear weight is stored
//! transposed (`[out, in]`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use crate::error::{ClipError, Result};

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
        let bytes = std::fs::read(path).map_err(|e| ClipError::io(path, e))?;
        Self::from_safetensors_bytes(&bytes, path)
    }

    /// The `__metadata__` strings of a safetensors file (empty when it has none).
    pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
        let bytes = std::fs::read(path).map_err(|e| ClipError::io(path, e))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| ClipError::Safetensors {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(meta
            .metadata()
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default())
    }

    /// Parses safetensors bytes like [`Self::read_safetensors`]; `path` is only for messages.
    pub fn from_safetensors_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| ClipError::Safetensors {
            path: path.into(),
            message: e.to_string(),
        })?;
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
                    return Err(ClipError::Dtype {
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

    /// Writes tensors as f32 (or f16) safetensors, atomically (temp file + rename).
    pub fn write_safetensors(
        tensors: &BTreeMap<String, HostTensor>,
        metadata: Option<std::collections::HashMap<String, String>>,
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
                    .map_err(|e| ClipError::Safetensors {
                        path: path.into(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_>>()?;
        let bytes =
            safetensors::serialize(views, metadata).map_err(|e| ClipError::Safetensors {
                path: path.into(),
                message: e.to_string(),
            })?;
        write_atomic(path, &bytes)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so that a
/// reader (or a run killed mid-write) never sees a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| ClipError::io(dir, e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(|e| ClipError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| ClipError::io(&tmp, e))?;
    f.sync_all().map_err(|e| ClipError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| ClipError::io(path, e))
}

/// How parameter paths become file keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// The burn module path itself.
    Burn,
    /// PyTorch naming and layout (LayerNorm weight/bias, Linear weight transposed).
    Torch,
}

struct PathTracker {
    stack: Vec<(String, String)>,
}

impl PathTracker {
    fn key(&self, prefix: &str, style: KeyStyle) -> (String, bool) {
        let mut parts: Vec<&str> = Vec::with_capacity(self.stack.len() + 1);
        if !prefix.is_empty() {
            parts.push(prefix);
        }
        parts.extend(self.stack.iter().map(|(n, _)| n.as_str()));
        // burn's derive passes the type of the struct that owns the field being entered.
        let container = self.stack.last().map(|(_, c)| c.as_str()).unwrap_or("");
        let mut transpose = false;
        if style == KeyStyle::Torch {
            let last = parts.len() - 1;
            match (container, parts[last]) {
                ("Struct:LayerNorm", "gamma") => parts[last] = "weight",
                ("Struct:LayerNorm", "beta") => parts[last] = "bias",
                ("Struct:Linear", "weight") => transpose = true,
                _ => {}
            }
        }
        (parts.join("."), transpose)
    }
}

/// Replaces a module's float parameters by the tensors of a [`TensorMap`].
struct Loader<'a> {
    map: &'a TensorMap,
    prefix: &'a str,
    style: KeyStyle,
    path: PathTracker,
    used: BTreeSet<String>,
    /// Parameters whose key is absent; kept as initialised when `allow_missing` says so.
    missing: Vec<(String, Vec<usize>)>,
    allow_missing: &'a dyn Fn(&str) -> bool,
    error: Option<ClipError>,
}

impl ModuleMapper for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .stack
            .push((name.to_string(), container_type.to_string()));
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.stack.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // The parameter's own name was pushed by enter_module just before this call.
        let (key, transpose) = self.path.key(self.prefix, self.style);
        if self.error.is_some() {
            return param;
        }
        let shape: Vec<usize> = param.lazy_shape().dims::<D>().to_vec();
        let Some(t) = self.map.tensors.get(&key) else {
            if !(self.allow_missing)(&key) {
                self.error = Some(ClipError::MissingKey {
                    path: self.map.source.clone(),
                    key: key.clone(),
                    expected: if transpose {
                        vec![shape[1], shape[0]]
                    } else {
                        shape.clone()
                    },
                });
            }
            self.missing.push((key, shape));
            return param;
        };
        let t = if transpose && t.shape.len() == 2 {
            t.t()
        } else {
            t.clone()
        };
        if t.shape != shape {
            let (expected, found) = if transpose && shape.len() == 2 && t.shape.len() == 2 {
                (vec![shape[1], shape[0]], vec![t.shape[1], t.shape[0]])
            } else {
                (shape, t.shape)
            };
            self.error = Some(ClipError::ShapeMismatch {
                path: self.map.source.clone(),
                key,
                expected,
                found,
            });
            return param;
        }
        self.used.insert(key);
        let device = param.lazy_device();
        let tensor = Tensor::<D>::from_data(TensorData::new(t.data, t.shape), &device);
        let id = param.id;
        param.transform_for_load(tensor, id)
    }
}

/// Summary of a load: keys taken and parameters left at their initial values.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Keys of the map that were loaded into a parameter.
    pub used: BTreeSet<String>,
    /// Parameters left at their initial values (allowed missing), with their shapes.
    pub missing: Vec<(String, Vec<usize>)>,
}

/// Loads `map` into `module`. Parameters are looked up under `prefix` with the given key style. A parameter
/// whose key is absent is an error unless `allow_missing(key)`; a shape mismatch is always an error.
pub fn load_module<M: Module>(
    module: M,
    map: &TensorMap,
    prefix: &str,
    style: KeyStyle,
    allow_missing: &dyn Fn(&str) -> bool,
) -> Result<(M, LoadReport)> {
    let mut loader = Loader {
        map,
        prefix,
        style,
        path: PathTracker { stack: Vec::new() },
        used: BTreeSet::new(),
        missing: Vec::new(),
        allow_missing,
        error: None,
    };
    let module = module.map(&mut loader);
    if let Some(e) = loader.error {
        return Err(e);
    }
    Ok((
        module,
        LoadReport {
            used: loader.used,
            missing: loader.missing,
        },
    ))
}

/// Errors if any key of `map` was neither used nor matched by `ignore`.
pub fn check_unused(
    map: &TensorMap,
    used: &BTreeSet<String>,
    ignore: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let unused: Vec<String> = map
        .tensors
        .keys()
        .filter(|k| !used.contains(*k) && !ignore(k))
        .cloned()
        .collect();
    if unused.is_empty() {
        Ok(())
    } else {
        Err(ClipError::UnusedKeys {
            path: map.source.clone(),
            keys: unused,
        })
    }
}

struct Collector<'a> {
    prefix: &'a str,
    style: KeyStyle,
    path: PathTracker,
    filter: &'a dyn Fn(&str, ParamId, bool) -> bool,
    out: BTreeMap<String, HostTensor>,
}

impl ModuleVisitor for Collector<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .stack
            .push((name.to_string(), container_type.to_string()));
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.stack.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (key, transpose) = self.path.key(self.prefix, self.style);
        if !(self.filter)(&key, param.id, param.is_require_grad()) {
            return;
        }
        let t = param.val();
        let shape = t.dims().to_vec();
        // Float params are f32 (converted first), so the read cannot fail.
        let data = t
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let host = HostTensor::new(shape, data);
        self.out
            .insert(key, if transpose && D == 2 { host.t() } else { host });
    }
}

/// Every float parameter of `module` for which `filter(key, id, requires_grad)` holds, by key.
pub fn collect_params<M: Module>(
    module: &M,
    prefix: &str,
    style: KeyStyle,
    filter: &dyn Fn(&str, ParamId, bool) -> bool,
) -> BTreeMap<String, HostTensor> {
    let mut c = Collector {
        prefix,
        style,
        path: PathTracker { stack: Vec::new() },
        filter,
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}
