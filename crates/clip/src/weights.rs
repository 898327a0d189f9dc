//! Named tensors in and out of burn modules.
//!
//! A parameter's name is its module path (struct field names joined by `.`), written once where the
//! parameter is created. Two key styles exist: `Burn` is that path as is (our checkpoints); `Torch` is what
//! PyTorch calls the same tensor: LayerNorm `gamma`/`beta` are `weight`/`bias`, and a Linear weight is stored
//! transposed (`[out, in]`).

use std::collections::{BTreeMap, BTreeSet};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Tensor, TensorData};

use crate::error::{ClipError, Result};

// Host tensors, safetensors files and atomic writes live in `tgcnet-io`; re-exported so that
// `tgcnet_clip::weights::{HostTensor, TensorMap, write_atomic}` keep working.
pub use tgcnet_io::{HostTensor, TensorMap, write_atomic};

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
