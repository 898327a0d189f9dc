//! CLIP tower sizes, read from a checkpoint's own config (HF `config.json` or OpenCLIP JSON) or a preset.

use crate::error::{ClipError, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Activation inside the transformer MLPs: OpenAI checkpoints use QuickGELU, most OpenCLIP ones exact GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `x·σ(1.702x)`, the approximation OpenAI's CLIP was trained with.
    #[default]
    QuickGelu,
    /// Exact (erf) GELU.
    Gelu,
}

/// Sizes of the vision tower (a ViT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipVisionConfig {
    /// Input side in pixels the position table was trained for (other sizes resize it).
    pub image_size: usize,
    /// Side of a square patch in pixels.
    pub patch_size: usize,
    /// Token width.
    pub width: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Hidden width of each block's MLP.
    pub mlp_dim: usize,
}

/// Sizes of the text tower.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTextConfig {
    /// Number of BPE tokens (with the start and end tokens).
    pub vocab_size: usize,
    /// Longest token sequence, start and end tokens included (the position table's length).
    pub context_length: usize,
    /// Token width.
    pub width: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads per block.
    pub heads: usize,
    /// Hidden width of each block's MLP.
    pub mlp_dim: usize,
}

/// Sizes of both CLIP towers and the joint embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipConfig {
    /// Dimension of the joint image-text space (both projections land here).
    pub embed_dim: usize,
    /// The vision tower.
    pub vision: ClipVisionConfig,
    /// The text tower.
    pub text: ClipTextConfig,
    /// The MLP activation of both towers.
    #[serde(default)]
    pub activation: Activation,
    /// Epsilon of every layer norm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_eps() -> f64 {
    1e-5
}

impl ClipVisionConfig {
    /// Patches per side at [`Self::image_size`].
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    /// Patch tokens plus the class token.
    pub fn num_positions(&self) -> usize {
        self.grid() * self.grid() + 1
    }
}

impl ClipConfig {
    /// OpenAI ViT-B/16 (as in `openai/clip-vit-base-patch16`).
    pub fn vit_b16() -> Self {
        Self::openai(16, 224, 768, 12, 512, 512, 8)
    }
    /// OpenAI ViT-B/32.
    pub fn vit_b32() -> Self {
        Self::openai(32, 224, 768, 12, 512, 512, 8)
    }
    /// OpenAI ViT-L/14.
    pub fn vit_l14() -> Self {
        Self::openai(14, 224, 1024, 24, 768, 768, 12)
    }

    /// A preset by name (`ViT-B/16`, `vit-b-32`, `vitl14`, …; case, `-`, `/` and `_` ignored).
    pub fn preset(name: &str) -> Option<Self> {
        match name
            .to_ascii_lowercase()
            .replace(['-', '/', '_'], "")
            .as_str()
        {
            "vitb16" => Some(Self::vit_b16()),
            "vitb32" => Some(Self::vit_b32()),
            "vitl14" => Some(Self::vit_l14()),
            _ => None,
        }
    }

    fn openai(
        patch: usize,
        image: usize,
        vwidth: usize,
        vlayers: usize,
        twidth: usize,
        embed: usize,
        theads: usize,
    ) -> Self {
        ClipConfig {
            embed_dim: embed,
            vision: ClipVisionConfig {
                image_size: image,
                patch_size: patch,
                width: vwidth,
                layers: vlayers,
                heads: vwidth / 64,
                mlp_dim: vwidth * 4,
            },
            text: ClipTextConfig {
                vocab_size: 49408,
                context_length: 77,
                width: twidth,
                layers: 12,
                heads: theads,
                mlp_dim: twidth * 4,
            },
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
        }
    }

    /// Reads a config file: HF `config.json` (`vision_config` / `text_config`), OpenCLIP
    /// (`{"embed_dim", "vision_cfg", "text_cfg"}`, optionally wrapped in `{"model_cfg": ...}`),
    /// or our own serialisation of [`ClipConfig`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ClipError::io(path, e))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClipError::Config {
                path: path.into(),
                message: format!("not JSON: {e}"),
            })?;
        Self::from_json(&json).map_err(|message| ClipError::Config {
            path: path.into(),
            message,
        })
    }

    /// Reads a config from its JSON value in any of [`Self::from_file`]'s layouts; the error is a message.
    pub fn from_json(json: &serde_json::Value) -> std::result::Result<Self, String> {
        if json.get("vision_config").is_some() {
            return Self::from_hf(json);
        }
        if let Some(cfg) = json.get("model_cfg") {
            return Self::from_open_clip(cfg, json.get("quick_gelu"));
        }
        if json.get("vision_cfg").is_some() {
            return Self::from_open_clip(json, None);
        }
        serde_json::from_value(json.clone()).map_err(|e| {
            format!("neither an HF CLIP config, an OpenCLIP config nor a tgcnet ClipConfig: {e}")
        })
    }

    fn from_hf(json: &serde_json::Value) -> std::result::Result<Self, String> {
        let c = HfConfig::deserialize(json).map_err(|e| e.to_string())?;
        let (v, t) = (
            c.vision_config.unwrap_or_default(),
            c.text_config.unwrap_or_default(),
        );
        let activation = parse_act(v.hidden_act.as_deref())?;
        if parse_act(t.hidden_act.as_deref())? != activation {
            return Err("vision and text towers use different activations".into());
        }
        // HF omits fields equal to the class defaults; these are CLIPVisionConfig's / CLIPTextConfig's.
        Ok(ClipConfig {
            embed_dim: c.projection_dim.unwrap_or(512),
            vision: ClipVisionConfig {
                image_size: v.image_size.unwrap_or(224),
                patch_size: v.patch_size.unwrap_or(32),
                width: v.hidden_size.unwrap_or(768),
                layers: v.num_hidden_layers.unwrap_or(12),
                heads: v.num_attention_heads.unwrap_or(12),
                mlp_dim: v.intermediate_size.unwrap_or(3072),
            },
            text: ClipTextConfig {
                vocab_size: t.vocab_size.unwrap_or(49408),
                context_length: t.max_position_embeddings.unwrap_or(77),
                width: t.hidden_size.unwrap_or(512),
                layers: t.num_hidden_layers.unwrap_or(12),
                heads: t.num_attention_heads.unwrap_or(8),
                mlp_dim: t.intermediate_size.unwrap_or(2048),
            },
            activation,
            layer_norm_eps: v.layer_norm_eps.unwrap_or(1e-5),
        })
    }

    fn from_open_clip(
        json: &serde_json::Value,
        outer_quick_gelu: Option<&serde_json::Value>,
    ) -> std::result::Result<Self, String> {
        let c = OpenClipConfig::deserialize(json).map_err(|e| e.to_string())?;
        let (v, t) = (c.vision_cfg, c.text_cfg);
        let outer = outer_quick_gelu.and_then(serde_json::Value::as_bool);
        let quick = c.quick_gelu.or(outer).unwrap_or(false);
        // OpenCLIP's defaults: head_width 64, mlp_ratio 4.0 (VisionCfg / TextCfg dataclasses).
        let ratio = |width: usize, r: Option<f64>| (width as f64 * r.unwrap_or(4.0)) as usize;
        Ok(ClipConfig {
            embed_dim: c.embed_dim,
            vision: ClipVisionConfig {
                image_size: v.image_size,
                patch_size: v.patch_size,
                width: v.width,
                layers: v.layers,
                heads: v.width / v.head_width.unwrap_or(64),
                mlp_dim: ratio(v.width, v.mlp_ratio),
            },
            text: ClipTextConfig {
                vocab_size: t.vocab_size.unwrap_or(49408),
                context_length: t.context_length.unwrap_or(77),
                width: t.width,
                layers: t.layers,
                heads: t.heads.unwrap_or(t.width / t.head_width.unwrap_or(64)),
                mlp_dim: ratio(t.width, t.mlp_ratio),
            },
            activation: if quick {
                Activation::QuickGelu
            } else {
                Activation::Gelu
            },
            layer_norm_eps: 1e-5,
        })
    }
}

/// HF's `config.json` for CLIP: the keys we read (absent ones take HF's class defaults; others are
/// ignored).
#[derive(Deserialize)]
struct HfConfig {
    projection_dim: Option<usize>,
    vision_config: Option<HfTower>,
    text_config: Option<HfTower>,
}

/// `vision_config` / `text_config` of [`HfConfig`] (the vision tower has no vocabulary, the text tower
/// no patches; unused keys stay `None`).
#[derive(Deserialize, Default)]
struct HfTower {
    hidden_act: Option<String>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    image_size: Option<usize>,
    patch_size: Option<usize>,
    vocab_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    layer_norm_eps: Option<f64>,
}

/// OpenCLIP's model config (`open_clip/model_configs/*.json`, or `model_cfg` of `open_clip_config.json`).
#[derive(Deserialize)]
struct OpenClipConfig {
    embed_dim: usize,
    quick_gelu: Option<bool>,
    vision_cfg: OpenClipVision,
    text_cfg: OpenClipText,
}

/// OpenCLIP's `vision_cfg` (the keys we read).
#[derive(Deserialize)]
struct OpenClipVision {
    image_size: usize,
    patch_size: usize,
    width: usize,
    layers: usize,
    head_width: Option<usize>,
    mlp_ratio: Option<f64>,
}

/// OpenCLIP's `text_cfg` (the keys we read).
#[derive(Deserialize)]
struct OpenClipText {
    width: usize,
    layers: usize,
    heads: Option<usize>,
    head_width: Option<usize>,
    mlp_ratio: Option<f64>,
    vocab_size: Option<usize>,
    context_length: Option<usize>,
}

/// HF's `hidden_act`, absent meaning CLIP's default QuickGELU.
fn parse_act(a: Option<&str>) -> std::result::Result<Activation, String> {
    match a.unwrap_or("quick_gelu") {
        "quick_gelu" => Ok(Activation::QuickGelu),
        "gelu" => Ok(Activation::Gelu),
        other => Err(format!(
            "unsupported hidden_act `{other}` (quick_gelu or gelu)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_have_expected_sizes() {
        let b16 = ClipConfig::preset("ViT-B/16").expect("preset");
        assert_eq!(b16.vision.grid(), 14);
        assert_eq!(b16.vision.heads, 12);
        let l14 = ClipConfig::preset("vit-l-14").expect("preset");
        assert_eq!(l14.vision.grid(), 16);
        assert_eq!(l14.text.width, 768);
        assert!(ClipConfig::preset("vit-h-99").is_none());
    }

    #[test]
    fn hf_config_takes_hf_defaults_for_omitted_keys() {
        let json = serde_json::json!({"projection_dim": null, "vision_config": {"patch_size": 16,
            "hidden_act": "gelu", "layer_norm_eps": 1e-6, "unused": [1]}, "text_config": {"hidden_act": "gelu"}});
        let c = ClipConfig::from_json(&json).expect("hf");
        assert_eq!(c.embed_dim, 512);
        assert_eq!(c.vision.patch_size, 16);
        assert_eq!(c.vision.mlp_dim, 3072);
        assert_eq!(c.text.heads, 8);
        assert_eq!(c.activation, Activation::Gelu);
        assert_eq!(c.layer_norm_eps, 1e-6);
        let mixed = serde_json::json!({"vision_config": {"hidden_act": "gelu"}});
        assert!(ClipConfig::from_json(&mixed).is_err());
        let bad = serde_json::json!({"vision_config": {"hidden_size": "wide"}});
        assert!(ClipConfig::from_json(&bad).is_err());
    }

    #[test]
    fn open_clip_config_wrapped_and_plain() {
        let plain = serde_json::json!({"embed_dim": 16, "vision_cfg": {"image_size": 32, "patch_size": 8,
            "width": 32, "layers": 2, "head_width": 16}, "text_cfg": {"context_length": 77, "vocab_size": 49408,
            "width": 32, "heads": 2, "layers": 2}});
        let a = ClipConfig::from_json(&plain).expect("plain");
        let wrapped = serde_json::json!({"model_cfg": plain, "preprocess_cfg": {}});
        let b = ClipConfig::from_json(&wrapped).expect("wrapped");
        assert_eq!(a, b);
        assert_eq!(a.vision.heads, 2);
        assert_eq!(a.vision.mlp_dim, 128);
        assert_eq!(a.activation, Activation::Gelu);
    }
}
