//! Training state on disk. `best.safetensors` is a plain parameter file ([`TgcNet::save_params`]: what
//! `eval` and `infer` read). `last.safetensors` adds the optimizer moments and the progress that
//! `--resume` needs; parameters are stored under `param.`, moments under `optim.`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tgcnet_io::{HostTensor, TensorMap};
use tgcnet_model::TgcNet;

use crate::error::{Result, TrainError};

/// Where a run stands after a completed epoch.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Epochs completed.
    pub epochs_done: usize,
    /// Optimizer steps taken.
    pub step: usize,
    /// Best validation Dice so far (per image, fraction).
    pub best_dice: f64,
    /// Epoch (1-based) of `best_dice`; 0 before the first validation.
    pub best_epoch: usize,
    /// Epochs since the best one, for early stopping.
    pub epochs_since_best: usize,
}

/// The `format` metadata of a training state file.
pub const STATE_FORMAT: &str = "tgcnet-train-state";

/// Writes `last.safetensors`: the model's checkpoint parameters, AdamW's moments, `progress` and the run
/// config, atomically.
pub fn save_state(
    path: &Path,
    model: &TgcNet,
    optim: BTreeMap<String, HostTensor>,
    progress: &Progress,
    run_config_toml: &str,
) -> Result<()> {
    let mut tensors = BTreeMap::new();
    for (k, v) in model.checkpoint_params() {
        tensors.insert(format!("param.{k}"), v);
    }
    for (k, v) in optim {
        tensors.insert(format!("optim.{k}"), v);
    }
    let meta = HashMap::from([
        ("format".to_string(), STATE_FORMAT.to_string()),
        (
            "progress".to_string(),
            serde_json::to_string(progress).map_err(|e| TrainError::Serialize {
                what: "the training progress",
                message: e.to_string(),
            })?,
        ),
        ("run_config".to_string(), run_config_toml.to_string()),
        ("tgcnet_config".to_string(), model.config().to_toml()?),
    ]);
    TensorMap::write_safetensors(&tensors, Some(meta), path, false)?;
    Ok(())
}

/// A loaded `last.safetensors`.
pub struct TrainState {
    /// The model's parameters, keyed without their `param.` prefix.
    pub params: BTreeMap<String, HostTensor>,
    /// AdamW's moments, keyed without their `optim.` prefix ([`crate::optim::AdamW::load_state`]).
    pub optim: BTreeMap<String, HostTensor>,
    /// Where the run stood.
    pub progress: Progress,
}

/// Reads a training state written by [`save_state`]; fails on any other file.
pub fn load_state(path: &Path) -> Result<TrainState> {
    let meta = TensorMap::read_metadata(path)?;
    if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
        return Err(TrainError::Checkpoint {
            path: path.into(),
            message: format!(
                "metadata format is {:?}, expected {STATE_FORMAT}",
                meta.get("format")
            ),
        });
    }
    let progress: Progress = meta
        .get("progress")
        .ok_or_else(|| TrainError::Checkpoint {
            path: path.into(),
            message: "no progress metadata".into(),
        })
        .and_then(|p| {
            serde_json::from_str(p).map_err(|e| TrainError::Checkpoint {
                path: path.into(),
                message: format!("progress metadata: {e}"),
            })
        })?;
    let map = TensorMap::read_safetensors(path)?;
    let mut params = BTreeMap::new();
    let mut optim = BTreeMap::new();
    for (k, v) in map.tensors {
        if let Some(p) = k.strip_prefix("param.") {
            params.insert(p.to_string(), v);
        } else if let Some(o) = k.strip_prefix("optim.") {
            optim.insert(o.to_string(), v);
        } else {
            return Err(TrainError::Checkpoint {
                path: path.into(),
                message: format!("unknown key `{k}`"),
            });
        }
    }
    Ok(TrainState {
        params,
        optim,
        progress,
    })
}

/// The model config stored in a parameter or state file.
pub fn model_config(path: &Path) -> Result<tgcnet_model::config::TgcNetConfig> {
    let meta = TensorMap::read_metadata(path)?;
    let text = meta
        .get("tgcnet_config")
        .ok_or_else(|| TrainError::Checkpoint {
            path: path.into(),
            message: "no `tgcnet_config` in its metadata (was it written by tgcnet?)".into(),
        })?;
    tgcnet_model::config::TgcNetConfig::from_toml_str(text).map_err(|message| {
        TrainError::Checkpoint {
            path: path.into(),
            message: format!("stored config: {message}"),
        }
    })
}

/// Builds the model a checkpoint was trained with and loads its parameters (either file kind).
pub fn load_model(path: &Path, device: &burn::tensor::Device) -> Result<TgcNet> {
    let cfg = model_config(path)?;
    let model = TgcNet::new(&cfg, device)?;
    let meta = TensorMap::read_metadata(path)?;
    if meta.get("format").map(String::as_str) == Some(STATE_FORMAT) {
        let state = load_state(path)?;
        Ok(model.load_params_map(state.params)?)
    } else {
        Ok(model.load_params_file(path)?)
    }
}
