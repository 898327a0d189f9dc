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

/// The model parameters of a parameter file or a training state, keyed as [`TgcNet::checkpoint_params`].
pub fn load_params(path: &Path) -> Result<BTreeMap<String, HostTensor>> {
    let meta = TensorMap::read_metadata(path)?;
    if meta.get("format").map(String::as_str) == Some(STATE_FORMAT) {
        Ok(load_state(path)?.params)
    } else {
        Ok(TensorMap::read_safetensors(path)?.tensors)
    }
}

/// Builds the model a checkpoint was trained with and loads its parameters (either file kind).
pub fn load_model(path: &Path, device: &burn::tensor::Device) -> Result<TgcNet> {
    let cfg = model_config(path)?;
    let model = TgcNet::new(&cfg, device)?;
    Ok(model.load_params_map(load_params(path)?)?)
}

/// The element-wise mean of several checkpoints' parameters (weight averaging of one run's last
/// epochs, Izmailov et al., 2018): every file must hold the same keys with the same shapes.
pub fn average_params(paths: &[&Path]) -> Result<BTreeMap<String, HostTensor>> {
    let Some((first, rest)) = paths.split_first() else {
        return Err(TrainError::Checkpoint {
            path: Path::new("").into(),
            message: "no checkpoint to average".into(),
        });
    };
    let mut sum = load_params(first)?;
    for path in rest {
        let other = load_params(path)?;
        let mismatch = |message: String| TrainError::Checkpoint {
            path: (*path).into(),
            message,
        };
        if other.len() != sum.len() {
            return Err(mismatch(format!(
                "{} parameters, {} holds {}",
                other.len(),
                first.display(),
                sum.len()
            )));
        }
        for (key, t) in other {
            let acc = sum
                .get_mut(&key)
                .ok_or_else(|| mismatch(format!("key `{key}` is not in {}", first.display())))?;
            if acc.shape != t.shape {
                return Err(mismatch(format!(
                    "`{key}` has shape {:?}, {:?} in {}",
                    t.shape,
                    acc.shape,
                    first.display()
                )));
            }
            acc.data.iter_mut().zip(&t.data).for_each(|(a, b)| *a += b);
        }
    }
    let n = paths.len() as f32;
    for t in sum.values_mut() {
        t.data.iter_mut().for_each(|a| *a /= n);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(
        dir: &Path,
        name: &str,
        tensors: &[(&str, Vec<usize>, Vec<f32>)],
    ) -> std::path::PathBuf {
        let map: BTreeMap<String, HostTensor> = tensors
            .iter()
            .map(|(k, s, d)| (k.to_string(), HostTensor::new(s.clone(), d.clone())))
            .collect();
        let path = dir.join(name);
        TensorMap::write_safetensors(&map, None, &path, false).expect("write");
        path
    }

    #[test]
    fn averaging_is_elementwise_and_refuses_other_layouts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = write(
            tmp.path(),
            "a",
            &[("w", vec![2], vec![1.0, 2.0]), ("b", vec![1], vec![0.0])],
        );
        let b = write(
            tmp.path(),
            "b",
            &[("w", vec![2], vec![3.0, 6.0]), ("b", vec![1], vec![1.0])],
        );
        let c = write(
            tmp.path(),
            "c",
            &[("w", vec![2], vec![2.0, 1.0]), ("b", vec![1], vec![2.0])],
        );
        let m = average_params(&[&a, &b, &c]).expect("average");
        assert_eq!(m["w"].data, vec![2.0, 3.0]);
        assert_eq!(m["b"].data, vec![1.0]);

        let shape = write(
            tmp.path(),
            "s",
            &[("w", vec![1, 2], vec![1.0, 2.0]), ("b", vec![1], vec![0.0])],
        );
        let e = average_params(&[&a, &shape])
            .expect_err("shape")
            .to_string();
        assert!(e.contains("`w` has shape") && e.contains("/s"), "{e}");
        let key = write(
            tmp.path(),
            "k",
            &[("w", vec![2], vec![1.0, 2.0]), ("x", vec![1], vec![0.0])],
        );
        let e = average_params(&[&a, &key]).expect_err("key").to_string();
        assert!(e.contains("key `x`"), "{e}");
        assert!(average_params(&[]).is_err());
    }
}
