//! The one configuration of a TGC-Net model (Lin et al., 2025, arXiv 2512.21135), as TOML: CLIP towers and
//! their weights, then one table per module (SSE, DATE, VLCM, decoder, loss). Every reconstructed (R) choice
//! of the architecture is a field here, so ablations and corrections are config changes.
//!
//! A user's file only states what it changes: it starts from a preset (`preset = "small"` at the top;
//! `paper` when absent) and its tables are merged into it key by key. Unknown keys are errors, also inside
//! `[clip.model]`.
//!
//! ```toml
//! preset = "paper"
//! [clip]
//! weights = "clip-b16"          # HF directory or OpenCLIP .safetensors
//! [vlcm]
//! enabled = false               # ablation: concatenation instead of VLCM
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tgcnet_clip::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig};
use tgcnet_data::SideConvention;

use crate::date::DateConfig;
use crate::decoder::DecoderConfig;
use crate::error::{ModelError, Result};
use crate::loss::LossConfig;
use crate::sse::SseConfig;
use crate::tta::TtaConfig;
use crate::vlcm::VlcmConfig;

/// The CLIP towers: their sizes, where their pretrained weights are, and which are frozen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClipSection {
    /// Tower sizes; with `weights` they must match the checkpoint's.
    pub model: ClipConfig,
    /// HF CLIP directory or OpenCLIP `.safetensors` (config beside it); absent: random towers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Keep the vision tower's weights fixed (its adapters still train).
    #[serde(default = "yes")]
    pub freeze_vision: bool,
    /// Keep the text tower's weights fixed (its adapters still train).
    #[serde(default = "yes")]
    pub freeze_text: bool,
}

fn yes() -> bool {
    true
}

/// Everything that defines a TGC-Net model and its loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TgcNetConfig {
    /// Input side S (square images); a multiple of 16 and of the patch size.
    pub image_size: usize,
    /// Text guidance; off: no text tower, DATE or VLCM (the image-only ablation).
    pub text: bool,
    /// The side convention of the training captions (`image`: "left" is the image's left, as in
    /// QaTa-COV19; `patient`: the patient's left). `infer`/`eval` convert captions written in the
    /// other convention, and DATE's side passages are written for this one.
    pub laterality: SideConvention,
    /// Probability above which a pixel is lesion for `infer`, `serve` and `eval` unless they are told
    /// otherwise (`[model] threshold`, set with `export --threshold`; 0.5 unless set): the operating point
    /// travels with the model, as its test-time views do, since averaged views shift the best one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// The CLIP towers (`[model.clip]`).
    pub clip: ClipSection,
    /// SSE (`[model.sse]`).
    pub sse: SseConfig,
    /// DATE (`[model.date]`).
    pub date: DateConfig,
    /// VLCM (`[model.vlcm]`).
    pub vlcm: VlcmConfig,
    /// The decoder (`[model.decoder]`).
    pub decoder: DecoderConfig,
    /// The loss (`[model.loss]`).
    pub loss: LossConfig,
    /// Test-time views `infer`, `serve` and `eval` average by default (`[model.tta]`; none unless set).
    #[serde(skip_serializing_if = "TtaConfig::is_off")]
    pub tta: TtaConfig,
}

impl Default for TgcNetConfig {
    fn default() -> Self {
        Self::paper()
    }
}

/// Names accepted by [`TgcNetConfig::preset`].
pub const PRESETS: [&str; 3] = ["paper", "small", "tiny"];

impl TgcNetConfig {
    /// The paper's setting as we reconstruct it: CLIP ViT-B/16 at 224, both towers frozen, adapters of
    /// width 64, taps after blocks 4, 8, 12, CNN 32/64/128/256, VLCM d = 256 at 1/16 and 1/8.
    pub fn paper() -> Self {
        Self {
            image_size: 224,
            text: true,
            laterality: SideConvention::Image,
            threshold: None,
            clip: ClipSection {
                model: ClipConfig::vit_b16(),
                weights: None,
                freeze_vision: true,
                freeze_text: true,
            },
            sse: SseConfig::default(),
            date: DateConfig::default(),
            vlcm: VlcmConfig::default(),
            decoder: DecoderConfig::default(),
            loss: LossConfig::default(),
            tta: TtaConfig::default(),
        }
    }

    /// A CLIP-shaped model small enough to train from scratch on a few CPU cores: ViT width 192, 6 blocks,
    /// patch 16 at 224; text width 128, 4 blocks, CLIP's vocabulary and context. Both towers train, so the
    /// adapters are off (a trainable tower subsumes them).
    pub fn small() -> Self {
        Self {
            image_size: 224,
            text: true,
            laterality: SideConvention::Image,
            threshold: None,
            clip: ClipSection {
                model: ClipConfig {
                    embed_dim: 128,
                    vision: ClipVisionConfig {
                        image_size: 224,
                        patch_size: 16,
                        width: 192,
                        layers: 6,
                        heads: 3,
                        mlp_dim: 768,
                    },
                    text: ClipTextConfig {
                        vocab_size: 49408,
                        context_length: 77,
                        width: 128,
                        layers: 4,
                        heads: 2,
                        mlp_dim: 512,
                    },
                    activation: Activation::Gelu,
                    layer_norm_eps: 1e-5,
                },
                weights: None,
                freeze_vision: false,
                freeze_text: false,
            },
            sse: SseConfig {
                adapters: false,
                adapter_width: 32,
                adapter_scale: 1.0,
                taps: vec![2, 4, 6],
                cnn: true,
                cnn_channels: vec![16, 32, 64, 128],
            },
            date: DateConfig {
                adapters: false,
                adapter_width: 32,
                heads: 2,
                ..DateConfig::default()
            },
            vlcm: VlcmConfig {
                dim: 96,
                heads: 4,
                ..VlcmConfig::default()
            },
            decoder: DecoderConfig {
                channels: vec![64, 32, 16],
                refine: 0,
            },
            loss: LossConfig::default(),
            tta: TtaConfig::default(),
        }
    }

    /// For tests: 32×32 images, the CLIP sizes of the test fixture `crates/clip/tests/fixtures/clip/hf`
    /// (ViT width 32, patch 8, 3 blocks; text width 16, 2 blocks; CLIP's real vocabulary so that the real
    /// tokenizer works), towers frozen.
    pub fn tiny() -> Self {
        Self {
            image_size: 32,
            text: true,
            laterality: SideConvention::Image,
            threshold: None,
            clip: ClipSection {
                model: ClipConfig {
                    embed_dim: 16,
                    vision: ClipVisionConfig {
                        image_size: 32,
                        patch_size: 8,
                        width: 32,
                        layers: 3,
                        heads: 2,
                        mlp_dim: 64,
                    },
                    text: ClipTextConfig {
                        vocab_size: 49408,
                        context_length: 77,
                        width: 16,
                        layers: 2,
                        heads: 2,
                        mlp_dim: 32,
                    },
                    activation: Activation::QuickGelu,
                    layer_norm_eps: 1e-5,
                },
                weights: None,
                freeze_vision: true,
                freeze_text: true,
            },
            sse: SseConfig {
                adapters: true,
                adapter_width: 8,
                adapter_scale: 1.0,
                taps: vec![1, 2, 3],
                cnn: true,
                cnn_channels: vec![8, 8, 16, 16],
            },
            date: DateConfig {
                adapter_width: 4,
                heads: 2,
                ..DateConfig::default()
            },
            vlcm: VlcmConfig {
                dim: 16,
                heads: 2,
                ..VlcmConfig::default()
            },
            decoder: DecoderConfig {
                channels: vec![16, 8, 8],
                refine: 0,
            },
            loss: LossConfig::default(),
            tta: TtaConfig::default(),
        }
    }

    /// A preset by name: `paper`, `small` or `tiny`.
    pub fn preset(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "paper" => Ok(Self::paper()),
            "small" => Ok(Self::small()),
            "tiny" => Ok(Self::tiny()),
            _ => Err(ModelError::UnknownPreset(name.into())),
        }
    }

    /// Parses a TOML config: the preset named by its top-level `preset` key (default `paper`), with the
    /// file's keys merged in. Unknown keys and invalid values are errors.
    pub fn from_toml_str(text: &str) -> std::result::Result<Self, String> {
        let mut user: toml::Table =
            toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
        let preset = match user.remove("preset") {
            None => "paper".to_string(),
            Some(toml::Value::String(s)) => s,
            Some(other) => return Err(format!("`preset` must be a string, got {other}")),
        };
        let base = Self::preset(&preset).map_err(|e| e.to_string())?;
        let mut merged =
            toml::Table::try_from(&base).map_err(|e| format!("cannot serialise preset: {e}"))?;
        merge_tables(&mut merged, &user);
        let cfg: Self = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| e.to_string())?;
        let full =
            toml::Table::try_from(&cfg).map_err(|e| format!("cannot serialise config: {e}"))?;
        check_known(&user, &full, "")?;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// Reads a TOML config file; errors name the file.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_toml_str(&text).map_err(|message| ModelError::ConfigFile {
            path: path.into(),
            message,
        })
    }

    /// The whole config as TOML (every key; reading it back gives the same config).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self)
            .map_err(|e| ModelError::Config(format!("cannot write TOML: {e}")))
    }

    /// Checks that the values describe a buildable model.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: String| Err(ModelError::Config(m));
        let v = &self.clip.model.vision;
        let t = &self.clip.model.text;
        let s = self.image_size;
        if s == 0 || !s.is_multiple_of(16) {
            return fail(format!(
                "image_size = {s} must be a positive multiple of 16"
            ));
        }
        if v.patch_size == 0 || !s.is_multiple_of(v.patch_size) {
            return fail(format!(
                "image_size = {s} must be a multiple of the patch size {}",
                v.patch_size
            ));
        }
        if v.heads == 0
            || !v.width.is_multiple_of(v.heads)
            || t.heads == 0
            || !t.width.is_multiple_of(t.heads)
        {
            return fail("clip.model: heads must divide the tower widths".into());
        }
        if t.context_length < 2 {
            return fail("clip.model.text.context_length must be at least 2".into());
        }
        let results = [
            self.sse.validate(v.layers),
            if self.text {
                self.date.validate(t.width)
            } else {
                Ok(())
            },
            self.vlcm.validate(),
            self.decoder.validate(),
        ];
        for r in results {
            r.map_err(ModelError::Config)?;
        }
        if let Some(th) = self.threshold
            && !(th > 0.0 && th < 1.0)
        {
            return fail(format!(
                "threshold = {th} must lie strictly between 0 and 1"
            ));
        }
        self.tta.validate(v.patch_size)
    }

    /// The probability above which a pixel is lesion: `threshold`, else 0.5.
    pub fn mask_threshold(&self) -> f32 {
        self.threshold.unwrap_or(0.5)
    }

    /// Whether a parameter key (a module path of [`crate::TgcNet`]) is trained with this config.
    pub fn is_trainable_key(&self, key: &str) -> bool {
        if key.starts_with("vision.") {
            !self.clip.freeze_vision
        } else if key.starts_with("text.") {
            !self.clip.freeze_text
        } else {
            true
        }
    }

    /// Whether a parameter key is written to checkpoints: the trained ones, and frozen towers that have no
    /// pretrained weights to come from (random towers, e.g. the tiny preset), so that a checkpoint alone
    /// restores the model.
    pub fn is_checkpoint_key(&self, key: &str) -> bool {
        self.is_trainable_key(key)
            || (self.clip.weights.is_none()
                && (key.starts_with("vision.") || key.starts_with("text.")))
    }
}

/// Overwrites `base` with `over`, table by table: how a config file's keys go over a preset (the model's
/// `preset` key here, the run config's `[model]` table in `tgcnet_train`).
pub fn merge_tables(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Errors on the first key of `user` that the parsed config does not have (a typo serde ignored).
fn check_known(
    user: &toml::Table,
    full: &toml::Table,
    prefix: &str,
) -> std::result::Result<(), String> {
    for (k, v) in user {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (full.get(k), v) {
            (None, _) => return Err(format!("unknown key `{path}`")),
            (Some(toml::Value::Table(f)), toml::Value::Table(u)) => check_known(u, f, &path)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip_through_toml() {
        for name in PRESETS {
            let cfg = TgcNetConfig::preset(name).expect("preset");
            cfg.validate().expect("valid");
            let text = cfg.to_toml().expect("toml");
            let back = TgcNetConfig::from_toml_str(&text)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{text}"));
            assert_eq!(back, cfg, "{name}");
        }
        assert!(TgcNetConfig::preset("huge").is_err());
        let mut cfg = TgcNetConfig::small();
        assert_eq!(cfg.mask_threshold(), 0.5);
        cfg.threshold = Some(0.4);
        let back = TgcNetConfig::from_toml_str(&cfg.to_toml().expect("toml")).expect("parse");
        assert_eq!(back.mask_threshold(), 0.4);
        assert_eq!(back, cfg);
    }

    #[test]
    fn a_file_states_only_what_it_changes() {
        let cfg = TgcNetConfig::from_toml_str(
            "preset = \"small\"\ntext = false\n[vlcm]\ndim = 48\n[clip.model.vision]\nlayers = 4\n[sse]\ntaps = [1, 2, 4]\n",
        )
        .expect("parse");
        let mut want = TgcNetConfig::small();
        want.text = false;
        want.vlcm.dim = 48;
        want.clip.model.vision.layers = 4;
        want.sse.taps = vec![1, 2, 4];
        assert_eq!(cfg, want);
        assert_eq!(
            TgcNetConfig::from_toml_str("").expect("empty"),
            TgcNetConfig::paper()
        );
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        for (text, needle) in [
            ("[vlcm]\ndimm = 3\n", "dimm"),
            ("imagesize = 3\n", "imagesize"),
            (
                "[clip.model.vision]\nwidht = 3\n",
                "clip.model.vision.widht",
            ),
            ("[sse]\ntaps = [4, 8, 13]\n", "taps"),
            ("image_size = 200\n", "image_size"),
            ("preset = \"nope\"\n", "nope"),
            ("[vlcm]\nheads = 7\n", "heads"),
            ("threshold = 1.5\n", "threshold"),
            ("threshold = 0.0\n", "threshold"),
        ] {
            let e = TgcNetConfig::from_toml_str(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn file_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "[sse]\ncnn = 3\n").expect("write");
        let e = TgcNetConfig::from_toml_file(&p).expect_err("bad");
        assert!(e.to_string().contains("bad.toml"), "{e}");
        let e =
            TgcNetConfig::from_toml_file(&dir.path().join("missing.toml")).expect_err("missing");
        assert!(e.to_string().contains("missing.toml"), "{e}");
    }
}
