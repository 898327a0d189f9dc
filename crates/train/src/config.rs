//! The run configuration: the model's [`TgcNetConfig`] plus the schedule. One TOML file, `[model]` and
//! `[train]` tables; what is not given takes the defaults below (the peers' settings; docs/ARCHITECTURE.md).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tgcnet_data::AugmentConfig;
use tgcnet_model::config::{TgcNetConfig, merge_tables};

use crate::error::{Result, TrainError};

/// The `[train]` table: schedule, optimiser, augmentation and data selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of epochs (including any already done when resuming).
    pub epochs: usize,
    /// Samples per optimizer step.
    pub batch_size: usize,
    /// Peak learning rate of AdamW.
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW's first-moment decay.
    pub beta1: f64,
    /// AdamW's second-moment decay.
    pub beta2: f64,
    /// AdamW's denominator epsilon.
    pub eps: f64,
    /// Linear warm-up length in optimizer steps, then cosine decay to `min_lr` at the last step.
    pub warmup_steps: usize,
    /// Learning rate the cosine decay ends at.
    pub min_lr: f64,
    /// Gradients are rescaled so that their global L2 norm is at most this (0: off).
    pub grad_clip: f64,
    /// Seed of shuffling, augmentation and parameter initialisation.
    pub seed: u64,
    /// Stop after this many epochs without a better validation Dice (0: never).
    pub patience: usize,
    /// Augment training samples (see `augmentation`).
    pub augment: bool,
    /// Ranges of the augmentation when `augment` is on (rotation, scale, shift, brightness, contrast,
    /// horizontal flip with left/right swapped in the caption).
    pub augmentation: AugmentConfig,
    /// Progressive resizing: epochs up to `until_epoch` (1-based, inclusive) train at `image_size`;
    /// epochs after the last stage at the model's `image_size`, at which validation always runs. The
    /// model is size-agnostic (the ViT's position table is resized for other grids), so the cheap
    /// early epochs at low resolution train the same parameters.
    pub resolution: Vec<ResolutionStage>,
    /// Data loading threads (0: all cores).
    pub workers: usize,
    /// Split the model trains on.
    pub train_split: String,
    /// Split validation (and best-checkpoint selection) uses.
    pub val_split: String,
    /// Use at most this many training samples per epoch (0: all); for quick runs.
    pub max_train_samples: usize,
    /// Use at most this many validation samples (0: all).
    pub max_val_samples: usize,
    /// Normalise captions ([`tgcnet_data::normalize_caption`]) for training and validation.
    pub normalize_captions: bool,
    /// `fail` or `skip`.
    pub on_bad_sample: String,
    /// Dataset path (overridden by `--data`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Start from these parameters (a parameter file or training state of the same architecture)
    /// instead of a random initialisation: fine-tuning, or a second learning-rate cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// Also keep every epoch's parameters as `epoch-NNN.safetensors`, for averaging the last epochs'
    /// weights (`tgcnet export --checkpoint A --checkpoint B ...`).
    pub snapshots: bool,
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
            augmentation: AugmentConfig::default(),
            resolution: Vec::new(),
            workers: 0,
            train_split: "train".into(),
            val_split: "val".into(),
            max_train_samples: 0,
            max_val_samples: 0,
            normalize_captions: true,
            on_bad_sample: "fail".into(),
            data: None,
            init: None,
            snapshots: false,
        }
    }
}

/// One stage of a progressive-resizing schedule ([`TrainConfig::resolution`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolutionStage {
    /// The last epoch (1-based) of this stage.
    pub until_epoch: usize,
    /// Input side during the stage (a multiple of 16 and of the patch size).
    pub image_size: usize,
}

impl TrainConfig {
    /// The input side for epoch `epoch` (0-based) of a model whose own side is `model_size`.
    pub fn image_size_at(&self, epoch: usize, model_size: usize) -> usize {
        self.resolution
            .iter()
            .find(|s| epoch < s.until_epoch)
            .map_or(model_size, |s| s.image_size)
    }
}

/// A whole run config file: an optional preset, the `[model]` table and the `[train]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// A preset name the `[model]` table starts from (`paper`, `small`, `tiny`); the table's keys override it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The model (`[model]`).
    pub model: TgcNetConfig,
    /// The schedule (`[train]`).
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
            let mut base = toml::Table::try_from(&base).map_err(|e| err(e.to_string()))?;
            let over = value
                .remove("model")
                .and_then(|m| m.as_table().cloned())
                .unwrap_or_default();
            merge_tables(&mut base, &over);
            value.insert("model".into(), toml::Value::Table(base));
        }
        let cfg: RunConfig = toml::Value::Table(value)
            .try_into()
            .map_err(|e: toml::de::Error| err(e.to_string()))?;
        cfg.validated(origin)
    }

    /// The run config of a preset (`paper`, `small`, `tiny`) with the default schedule: what a file
    /// holding only `preset = "NAME"` reads as.
    pub fn from_preset(name: &str) -> Result<Self> {
        let cfg = RunConfig {
            preset: Some(name.to_string()),
            model: TgcNetConfig::preset(name).map_err(|e| TrainError::Config {
                path: "--preset".into(),
                message: e.to_string(),
            })?,
            train: TrainConfig::default(),
        };
        cfg.validated(Path::new("--preset"))
    }

    /// The config when it passes the checks a config file must pass (a buildable model, a usable
    /// schedule); errors name `origin`. Configs built in code go through this too, so that they obey
    /// the same rules as a user's file.
    pub fn validated(self, origin: &Path) -> Result<Self> {
        let err = |message: String| TrainError::Config {
            path: origin.into(),
            message,
        };
        let cfg = self;
        cfg.model.validate().map_err(|e| err(e.to_string()))?;
        if cfg.train.batch_size == 0 || cfg.train.epochs == 0 {
            return Err(err(
                "train.batch_size and train.epochs must be at least 1".into()
            ));
        }
        let patch = cfg.model.clip.model.vision.patch_size;
        let mut previous = 0;
        for s in &cfg.train.resolution {
            if s.until_epoch <= previous {
                return Err(err(format!(
                    "train.resolution: stages must end at increasing epochs (until_epoch {} after {previous})",
                    s.until_epoch
                )));
            }
            if s.image_size == 0 || s.image_size % 16 != 0 || s.image_size % patch != 0 {
                return Err(err(format!(
                    "train.resolution: image_size = {} must be a positive multiple of 16 and of the patch size {patch}",
                    s.image_size
                )));
            }
            previous = s.until_epoch;
        }
        Ok(cfg)
    }

    /// Reads and parses a run config file ([`Self::from_toml_str`]).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        Self::from_toml_str(&text, path)
    }

    /// The fully resolved config (no preset indirection), as written into a run directory.
    pub fn to_toml(&self) -> Result<String> {
        let mut resolved = self.clone();
        resolved.preset = None;
        toml::to_string_pretty(&resolved).map_err(|e| TrainError::Serialize {
            what: "the run config",
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_built_configs_equal_their_files() {
        for name in ["paper", "small", "tiny"] {
            let typed = RunConfig::from_preset(name).unwrap();
            let file =
                RunConfig::from_toml_str(&format!("preset = {name:?}\n"), Path::new("f")).unwrap();
            assert_eq!(typed, file, "{name}");
        }
        let mut cfg = RunConfig::from_preset("tiny").unwrap();
        cfg.preset = None;
        cfg.model.loss.aux_weight = 1.0;
        cfg.train.lr = 1e-3;
        cfg.train.warmup_steps = 20;
        cfg.train.augment = false;
        let read = RunConfig::from_toml_str(&cfg.to_toml().unwrap(), Path::new("f")).unwrap();
        assert_eq!(cfg.clone().validated(Path::new("f")).unwrap(), read);
        cfg.train.epochs = 0;
        assert!(cfg.validated(Path::new("f")).is_err());
    }

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
    fn resolution_stages_pick_the_size_per_epoch() {
        let cfg = RunConfig::from_toml_str(
            "preset = \"tiny\"\n[model]\nimage_size = 64\n[train]\nepochs = 5\n\
             [[train.resolution]]\nuntil_epoch = 2\nimage_size = 32\n\
             [[train.resolution]]\nuntil_epoch = 3\nimage_size = 48\n\
             [train.augmentation]\nhflip_prob = 0.5\n",
            Path::new("x.toml"),
        )
        .expect("parse");
        let sizes: Vec<usize> = (0..5).map(|e| cfg.train.image_size_at(e, 64)).collect();
        assert_eq!(sizes, [32, 32, 48, 64, 64]);
        assert_eq!(cfg.train.augmentation.hflip_prob, 0.5);
        assert_eq!(cfg.train.augmentation.rotate_deg, 10.0);
        let back = RunConfig::from_toml_str(&cfg.to_toml().expect("toml"), Path::new("y.toml"))
            .expect("reparse");
        assert_eq!((back.model, back.train), (cfg.model, cfg.train));
        for bad in [
            "[[train.resolution]]\nuntil_epoch = 2\nimage_size = 40\n",
            "[[train.resolution]]\nuntil_epoch = 2\nimage_size = 32\n[[train.resolution]]\nuntil_epoch = 2\nimage_size = 48\n",
        ] {
            let e =
                RunConfig::from_toml_str(&format!("preset = \"tiny\"\n{bad}"), Path::new("r.toml"))
                    .expect_err(bad);
            assert!(e.to_string().contains("train.resolution"), "{e}");
        }
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
