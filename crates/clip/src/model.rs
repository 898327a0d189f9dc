//! The two CLIP towers with their projections, loadable from HF and OpenCLIP checkpoints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::config::ClipConfig;
use crate::error::{ClipError, Result};
use crate::text::ClipTextTransformer;
use crate::vision::ClipVisionTransformer;
use crate::weights::{HostTensor, KeyStyle, LoadReport, TensorMap, check_unused, load_module};
use tgcnet_kernels::linear;

/// HF `CLIPModel` minus `logit_scale`: field names are HF's keys.
#[derive(Module, Debug)]
pub struct Clip {
    /// The vision tower.
    pub vision_model: ClipVisionTransformer,
    /// Vision features (pooled class token) into the joint space.
    pub visual_projection: Linear,
    /// The text tower.
    pub text_model: ClipTextTransformer,
    /// Text features (pooled end token) into the joint space.
    pub text_projection: Linear,
}

/// Checkpoint tensors that carry no model weight.
pub fn is_ignored_key(key: &str) -> bool {
    key.ends_with("position_ids")
        || key == "logit_scale"
        || key == "logit_bias"
        || key.ends_with("attn_mask")
}

/// Which on-disk layout a checkpoint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// HF `transformers` (`vision_model.encoder.layers.0.self_attn.q_proj.weight`).
    HuggingFace,
    /// OpenCLIP / OpenAI (`visual.transformer.resblocks.0.attn.in_proj_weight`).
    OpenClip,
}

impl Clip {
    /// Randomly initialised towers and projections of `cfg`'s sizes.
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        Self {
            vision_model: ClipVisionTransformer::new(cfg, device),
            visual_projection: LinearConfig::new(cfg.vision.width, cfg.embed_dim)
                .with_bias(false)
                .init(device),
            text_model: ClipTextTransformer::new(cfg, device),
            text_projection: LinearConfig::new(cfg.text.width, cfg.embed_dim)
                .with_bias(false)
                .init(device),
        }
    }

    /// Projected, L2-normalised image embeddings. pixels: [B, 3, H, W] → [B, E]
    pub fn image_embeds(&self, pixels: Tensor<4>) -> Tensor<2> {
        let out = self.vision_model.forward(pixels, &[], None);
        l2_normalize(linear(&self.visual_projection, out.pooled))
    }

    /// Projected, L2-normalised text embeddings. ids: [B, L] → [B, E]
    pub fn text_embeds(&self, ids: Tensor<2, Int>) -> Tensor<2> {
        let out = self.text_model.forward(ids, None);
        l2_normalize(linear(&self.text_projection, out.pooled))
    }

    /// Loads a checkpoint in either layout; see [`load_clip`].
    pub fn load(path: &Path, config: Option<&Path>, device: &Device) -> Result<(Self, ClipConfig)> {
        load_clip(path, config, device)
    }
}

/// x: [B, E] → rows divided by their L2 norm.
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Finds the weights and config of a checkpoint path: an HF directory (`config.json` +
/// `model.safetensors`), or an OpenCLIP `.safetensors` file with its JSON config given or beside it
/// (`NAME.json`, `open_clip_config.json` or `config.json` in the same directory).
pub fn resolve_checkpoint(path: &Path, config: Option<&Path>) -> Result<(PathBuf, PathBuf)> {
    if !path.exists() {
        return Err(ClipError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ));
    }
    if path.is_dir() {
        let weights = path.join("model.safetensors");
        let cfg = config
            .map(Path::to_path_buf)
            .unwrap_or_else(|| path.join("config.json"));
        for p in [&weights, &cfg] {
            if !p.exists() {
                return Err(ClipError::io(
                    p,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "expected in an HF CLIP model directory",
                    ),
                ));
            }
        }
        return Ok((weights, cfg));
    }
    if let Some(c) = config {
        return Ok((path.to_path_buf(), c.to_path_buf()));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidates = [
        dir.join(format!("{stem}.json")),
        dir.join("open_clip_config.json"),
        dir.join("config.json"),
    ];
    candidates
        .into_iter()
        .find(|c| c.exists())
        .map(|c| (path.to_path_buf(), c))
        .ok_or_else(|| ClipError::Config {
            path: path.into(),
            message: format!(
                "no model config found beside it (looked for {stem}.json, open_clip_config.json, config.json); pass --config"
            ),
        })
}

/// Detects the layout from the key names.
pub fn detect_layout(map: &TensorMap) -> Layout {
    if map
        .tensors
        .keys()
        .any(|k| k.starts_with("visual.") || k == "token_embedding.weight")
    {
        Layout::OpenClip
    } else {
        Layout::HuggingFace
    }
}

/// Loads a CLIP checkpoint in HF or OpenCLIP layout. Every tensor must be used or be on the ignore list
/// ([`is_ignored_key`]); a missing or mis-shaped tensor is an error naming the key and both shapes.
pub fn load_clip(
    path: &Path,
    config: Option<&Path>,
    device: &Device,
) -> Result<(Clip, ClipConfig)> {
    let (weights, cfg_path) = resolve_checkpoint(path, config)?;
    let cfg = ClipConfig::from_file(&cfg_path)?;
    let map = TensorMap::read_safetensors(&weights)?;
    let map = match detect_layout(&map) {
        Layout::HuggingFace => map,
        Layout::OpenClip => open_clip_to_hf(map, &cfg)?,
    };
    let (clip, _report) = load_into(Clip::new(&cfg, device), &map)?;
    Ok((clip, cfg))
}

/// Loads HF-named tensors into a CLIP model, checking that every tensor is used.
pub fn load_into(clip: Clip, map: &TensorMap) -> Result<(Clip, LoadReport)> {
    let (clip, report) = load_module(clip, map, "", KeyStyle::Torch, &|_| false)?;
    check_unused(map, &report.used, &is_ignored_key)?;
    Ok((clip, report))
}

/// Renames an OpenCLIP / OpenAI state dict to HF's keys. This table is the single place where the two
/// layouts meet:
///
/// | OpenCLIP | HF |
/// |---|---|
/// | `visual.conv1.weight` | `vision_model.embeddings.patch_embedding.weight` |
/// | `visual.class_embedding` | `vision_model.embeddings.class_embedding` |
/// | `visual.positional_embedding` | `vision_model.embeddings.position_embedding.weight` |
/// | `visual.ln_pre.*` | `vision_model.pre_layrnorm.*` |
/// | `visual.ln_post.*` | `vision_model.post_layernorm.*` |
/// | `visual.proj` `[W, E]` (used as `x @ proj`) | `visual_projection.weight` `[E, W]` (transposed) |
/// | `token_embedding.weight` | `text_model.embeddings.token_embedding.weight` |
/// | `positional_embedding` | `text_model.embeddings.position_embedding.weight` |
/// | `ln_final.*` | `text_model.final_layer_norm.*` |
/// | `text_projection` `[W, E]` | `text_projection.weight` `[E, W]` (transposed) |
/// | `{visual.,}transformer.resblocks.i.ln_1.*` | `{vision,text}_model.encoder.layers.i.layer_norm1.*` |
/// | `….ln_2.*` | `….layer_norm2.*` |
/// | `….attn.in_proj_{weight,bias}` `[3W, …]` | `….self_attn.{q,k,v}_proj.*` (split in three along rows) |
/// | `….attn.out_proj.*` | `….self_attn.out_proj.*` |
/// | `….mlp.c_fc.*` / `….mlp.c_proj.*` | `….mlp.fc1.*` / `….mlp.fc2.*` |
pub fn open_clip_to_hf(map: TensorMap, cfg: &ClipConfig) -> Result<TensorMap> {
    let source = map.source.clone();
    let mut out: BTreeMap<String, HostTensor> = BTreeMap::new();
    for (key, t) in map.tensors {
        let (tower, rest) = if let Some(r) = key.strip_prefix("visual.") {
            ("vision_model", r)
        } else {
            ("text_model", key.as_str())
        };
        let fixed = match (tower, rest) {
            ("vision_model", "conv1.weight") => {
                Some("vision_model.embeddings.patch_embedding.weight".to_string())
            }
            ("vision_model", "class_embedding") => {
                Some("vision_model.embeddings.class_embedding".to_string())
            }
            ("vision_model", "positional_embedding") => {
                Some("vision_model.embeddings.position_embedding.weight".to_string())
            }
            ("text_model", "token_embedding.weight") => {
                Some("text_model.embeddings.token_embedding.weight".to_string())
            }
            ("text_model", "positional_embedding") => {
                Some("text_model.embeddings.position_embedding.weight".to_string())
            }
            _ => None,
        };
        if let Some(k) = fixed {
            out.insert(k, t);
            continue;
        }
        if tower == "vision_model" && rest == "proj" {
            out.insert(
                "visual_projection.weight".into(),
                transpose2(&source, &key, &t)?,
            );
            continue;
        }
        if tower == "text_model" && rest == "text_projection" {
            out.insert(
                "text_projection.weight".into(),
                transpose2(&source, &key, &t)?,
            );
            continue;
        }
        let ln = |prefix: &str, hf: &str| -> Option<String> {
            rest.strip_prefix(prefix)
                .map(|suffix| format!("{tower}.{hf}{suffix}"))
        };
        if let Some(k) = ln("ln_pre", "pre_layrnorm")
            .or_else(|| ln("ln_post", "post_layernorm"))
            .or_else(|| ln("ln_final", "final_layer_norm"))
        {
            out.insert(k, t);
            continue;
        }
        if let Some(r) = rest.strip_prefix("transformer.resblocks.") {
            let (idx, sub) = r.split_once('.').unwrap_or((r, ""));
            let base = format!("{tower}.encoder.layers.{idx}");
            let width = if tower == "vision_model" {
                cfg.vision.width
            } else {
                cfg.text.width
            };
            match sub {
                "attn.in_proj_weight" | "attn.in_proj_bias" => {
                    if t.shape.first() != Some(&(3 * width)) {
                        return Err(ClipError::ShapeMismatch {
                            path: source.clone(),
                            key: key.clone(),
                            expected: if t.shape.len() == 2 {
                                vec![3 * width, width]
                            } else {
                                vec![3 * width]
                            },
                            found: t.shape.clone(),
                        });
                    }
                    let what = if sub.ends_with("weight") {
                        "weight"
                    } else {
                        "bias"
                    };
                    for (i, n) in ["q_proj", "k_proj", "v_proj"].iter().enumerate() {
                        out.insert(
                            format!("{base}.self_attn.{n}.{what}"),
                            t.rows(i * width, width),
                        );
                    }
                    continue;
                }
                _ => {}
            }
            let renamed = [
                ("attn.out_proj.", "self_attn.out_proj."),
                ("ln_1.", "layer_norm1."),
                ("ln_2.", "layer_norm2."),
                ("mlp.c_fc.", "mlp.fc1."),
                ("mlp.c_proj.", "mlp.fc2."),
            ]
            .iter()
            .find_map(|(from, to)| sub.strip_prefix(from).map(|s| format!("{base}.{to}{s}")));
            if let Some(k) = renamed {
                out.insert(k, t);
                continue;
            }
        }
        // Unknown keys pass through unchanged, so the unused-key check reports them by their own name.
        out.insert(key, t);
    }
    Ok(TensorMap {
        source,
        tensors: out,
    })
}

fn transpose2(source: &Path, key: &str, t: &HostTensor) -> Result<HostTensor> {
    if t.shape.len() != 2 {
        return Err(ClipError::ShapeMismatch {
            path: source.into(),
            key: key.into(),
            expected: vec![0, 0],
            found: t.shape.clone(),
        });
    }
    Ok(t.t())
}
