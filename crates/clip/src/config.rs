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
        let v = &json["vision_config"];
        let t = &json["text_config"];
        // HF omits fields equal to the class defaults; these are CLIPVisionConfig's / CLIPTextConfig's.
        let get =
            |o: &serde_json::Value, k: &str, d: usize| -> std::result::Result<usize, String> {
                match o.get(k) {
                    None | Some(serde_json::Value::Null) => Ok(d),
                    Some(x) => x
                        .as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| format!("`{k}` is not an integer")),
                }
            };
        let act = v
            .get("hidden_act")
            .and_then(|a| a.as_str())
            .unwrap_or("quick_gelu");
        let activation = parse_act(act)?;
        let t_act = t
            .get("hidden_act")
            .and_then(|a| a.as_str())
            .unwrap_or("quick_gelu");
        if parse_act(t_act)? != activation {
            return Err("vision and text towers use different activations".into());
        }
        let vwidth = get(v, "hidden_size", 768)?;
        let twidth = get(t, "hidden_size", 512)?;
        Ok(ClipConfig {
            embed_dim: get(json, "projection_dim", 512)?,
            vision: ClipVisionConfig {
                image_size: get(v, "image_size", 224)?,
                patch_size: get(v, "patch_size", 32)?,
                width: vwidth,
                layers: get(v, "num_hidden_layers", 12)?,
                heads: get(v, "num_attention_heads", 12)?,
                mlp_dim: get(v, "intermediate_size", 3072)?,
            },
            text: ClipTextConfig {
                vocab_size: get(t, "vocab_size", 49408)?,
                context_length: get(t, "max_position_embeddings", 77)?,
                width: twidth,
                layers: get(t, "num_hidden_layers", 12)?,
                heads: get(t, "num_attention_heads", 8)?,
                mlp_dim: get(t, "intermediate_size", 2048)?,
            },
            activation,
            layer_norm_eps: v
                .get("layer_norm_eps")
                .and_then(|x| x.as_f64())
                .unwrap_or(1e-5),
        })
    }

    fn from_open_clip(
        json: &serde_json::Value,
        outer_quick_gelu: Option<&serde_json::Value>,
    ) -> std::result::Result<Self, String> {
        let v = &json["vision_cfg"];
        let t = &json["text_cfg"];
        let req = |o: &serde_json::Value, k: &str| -> std::result::Result<usize, String> {
            o.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| format!("`{k}` missing or not an integer"))
        };
        let opt = |o: &serde_json::Value, k: &str, d: usize| {
            o.get(k).and_then(|x| x.as_u64()).map_or(d, |x| x as usize)
        };
        let quick = json
            .get("quick_gelu")
            .or(outer_quick_gelu)
            .and_then(|x| x.as_bool())
            .unwrap_or(false);
        let vwidth = req(v, "width")?;
        let twidth = req(t, "width")?;
        // OpenCLIP's defaults: head_width 64, mlp_ratio 4.0 (VisionCfg / TextCfg dataclasses).
        let vhead = opt(v, "head_width", 64);
        let thead = opt(t, "head_width", 64);
        let vratio = v.get("mlp_ratio").and_then(|x| x.as_f64()).unwrap_or(4.0);
        let tratio = t.get("mlp_ratio").and_then(|x| x.as_f64()).unwrap_or(4.0);
        let theads = match t.get("heads").and_then(|x| x.as_u64()) {
            Some(h) => h as usize,
            None => twidth / thead,
        };
        Ok(ClipConfig {
            embed_dim: req(json, "embed_dim")?,
            vision: ClipVisionConfig {
                image_size: req(v, "image_size")?,
                patch_size: req(v, "patch_size")?,
                width: vwidth,
                layers: req(v, "layers")?,
                heads: vwidth / vhead,
                mlp_dim: (vwidth as f64 * vratio) as usize,
            },
            text: ClipTextConfig {
                vocab_size: opt(t, "vocab_size", 49408),
                context_length: opt(t, "context_length", 77),
                width: twidth,
                layers: req(t, "layers")?,
                heads: theads,
                mlp_dim: (twidth as f64 * tratio) as usize,
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

fn parse_act(a: &str) -> std::result::Result<Activation, String> {
    match a {
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
