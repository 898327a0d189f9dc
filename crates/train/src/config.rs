//! The run configuration: the model's [`TgcNetConfig`] plus the schedule. One TOML file, `[model]` and
//! `[train]` tables; what is not given takes the defaults below (the peers' settings, DESIGN.md).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tgcnet_model::config::TgcNetConfig;

use crate::error::{Result, TrainError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Linear warm-up length in optimizer steps, then cosine decay to `min_lr` at the last step.
    pub warmup_steps: usize,
    pub min_lr: f64,
    /// Gradients are rescaled so that their global L2 norm is at most this (0: off).
    pub grad_clip: f64,
    pub seed: u64,
    /// Stop after this many epochs without a better validation Dice (0: never).
    pub patience: usize,
    pub augment: bool,
    /// Data loading threads (0: all cores).
    pub workers: usize,
    pub train_split: String,
    pub val_split: String,
    /// Use at most this many training samples per epoch (0: all); for quick runs.
    pub max_train_samples: usize,
    /// Use at most this many validation samples (0: all).
    pub max_val_samples: usize,
    pub normalize_captions: bool,
    /// `fail` or `skip`.
    pub on_bad_sample: String,
    /// Dataset path (overridden by `--data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 100,
            batch_size: 16,
            lr: 3e-4,
            weight_decay: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_steps: 100,
            min_lr: 1e-6,
            grad_clip: 1.0,
            seed: 42,
            patience: 20,
            augment: true,
            workers: 0,
            train_split: "train".into(),
            val_split: "val".into(),
            max_train_samples: 0,
            max_val_samples: 0,
            normalize_captions: true,
            on_bad_sample: "fail".into(),
            data: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// A preset name the `[model]` table starts from (`paper`, `small`, `tiny`); the table's keys override it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    pub model: TgcNetConfig,
    pub train: TrainConfig,
}

impl RunConfig {
    /// Parses a run config. With `preset = "NAME"`, `[model]` keys are merged over that preset.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Self> {
        let err = |message: String| TrainError::Config {
            path: origin.into(),
            message,
        };
        let mut value: toml::Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if let Some(preset) = value
            .get("preset")
            .and_then(|p| p.as_str())
            .map(str::to_string)
        {
            let base = TgcNetConfig::preset(&preset).map_err(|e| err(e.to_string()))?;
            let base = toml::Table::try_from(&base).map_err(|e| err(e.to_string()))?;
            let over = value
                .remove("model")
                .and_then(|m| m.as_table().cloned())
                .unwrap_or_default();
            value.insert("model".into(), toml::Value::Table(merge(base, over)));
        }
        let cfg: RunConfig = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| err(e.to_string()))?;
        cfg.model.validate().map_err(|e| err(e.to_string()))?;
        if cfg.train.batch_size == 0 || cfg.train.epochs == 0 {
            return Err(err(
                "train.batch_size and train.epochs must be at least 1".into()
            ));
        }
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// The fully resolved config (no preset indirection), as written into a run directory.
    pub fn to_toml(&self) -> Result<String> {
        let mut resolved = self.clone();
        resolved.preset = None;
        toml::to_string_pretty(&resolved)
            .map_err(|e| TrainError::Other(format!("serialising config: {e}")))
    }
}

fn merge(mut base: toml::Table, over: toml::Table) -> toml::Table {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                let merged = merge(std::mem::take(b), o);
                *b = merged;
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
    base
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_with_overrides() {
        let cfg = RunConfig::from_toml_str(
            "preset = \"tiny\"\n[model]\nimage_size = 64\n[model.vlcm]\nenabled = false\n[train]\nepochs = 3\n",
            Path::new("x.toml"),
        )
        .expect("parse");
        assert_eq!(cfg.model.image_size, 64);
        assert!(!cfg.model.vlcm.enabled);
        assert_eq!(cfg.train.epochs, 3);
        let back = RunConfig::from_toml_str(&cfg.to_toml().expect("toml"), Path::new("y.toml"))
            .expect("reparse");
        assert_eq!(back.model, cfg.model);
    }

    #[test]
    fn typo_is_an_error_naming_the_file() {
        let e = RunConfig::from_toml_str(
            "preset = \"tiny\"\n[train]\nepoch = 3\n",
            Path::new("run.toml"),
        )
        .expect_err("typo");
        assert!(
            e.to_string().contains("run.toml") && e.to_string().contains("epoch"),
            "{e}"
        );
    }
}
