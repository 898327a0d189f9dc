//! Parameter counts and FLOPs of a TGC-Net configuration (Lin et al., 2025, arXiv 2512.21135), for
//! `tgcnet info`. The paper stresses "substantially fewer trainable parameters" than its peers (24-44 M);
//! our paper preset must stay under 10 M trainable.
//!
//! Parameters are counted on the built (lazy, never allocated) model, so they are the model's own numbers.
//! FLOPs are counted analytically per image: convolutions, linear layers and the attention matmuls
//! (QKᵀ and AV, full L×L also for the causal text tower), as multiply-adds × 2. Norms, activations,
//! softmax, resizing and additions are left out (a few % at most). The text tower counts its full
//! context (77 tokens); DATE counts [`ASSUMED_PASSAGES`] matched passages per report, whose encoding is free
//! with a frozen text tower (cached) and counted with a trainable one.

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;

use crate::config::TgcNetConfig;
use crate::error::Result;
use crate::tgcnet::TgcNet;

/// Matched passages per report assumed for DATE's FLOPs (QaTa captions name side, count, zones, finding).
pub const ASSUMED_PASSAGES: usize = 4;

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModuleInfo {
    /// Module name (`clip vision`, `sse cnn`, `date knowledge`, …).
    pub name: String,
    /// Parameters of the module.
    pub params: usize,
    /// Of them, those the optimiser updates.
    pub trainable: usize,
    /// Per image.
    pub flops: f64,
}

/// Parameter counts and FLOPs per module.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// Input side the FLOPs are counted at.
    pub image_size: usize,
    /// One row per module.
    pub modules: Vec<ModuleInfo>,
    /// Parameters of the whole model.
    pub total_params: usize,
    /// Parameters the optimiser updates.
    pub trainable_params: usize,
    /// Per image.
    pub total_flops: f64,
}

fn row(name: &str, params: usize, trainable: bool, flops: f64) -> ModuleInfo {
    ModuleInfo {
        name: name.into(),
        params,
        trainable: if trainable { params } else { 0 },
        flops,
    }
}

/// Builds the model lazily on `device` (nothing is allocated) and counts.
pub fn model_info(cfg: &TgcNetConfig, device: &Device) -> Result<ModelInfo> {
    let m = TgcNet::init(cfg, device)?;
    let f = flops(cfg);
    let date = m.date.as_ref();
    let modules = vec![
        row(
            "clip vision",
            m.vision.num_params(),
            !cfg.clip.freeze_vision,
            f.vision,
        ),
        row(
            "clip text",
            m.text.as_ref().map_or(0, |t| t.num_params()),
            !cfg.clip.freeze_text,
            f.text,
        ),
        row(
            "sse adapters",
            m.sse.adapters.num_params(),
            true,
            f.sse_adapters,
        ),
        row("sse cnn", m.sse.cnn.num_params(), true, f.cnn),
        row(
            "sse fusion",
            m.sse.fuse4.num_params() + m.sse.fuse8.num_params() + m.sse.fuse16.num_params(),
            true,
            f.fusion,
        ),
        row(
            "date adapters",
            date.map_or(0, |d| d.adapters.num_params()),
            true,
            f.date_adapters,
        ),
        row(
            "date knowledge",
            date.map_or(0, |d| d.knowledge.num_params()),
            true,
            f.date_knowledge,
        ),
        row(
            if cfg.vlcm.enabled {
                "vlcm"
            } else {
                "text concat"
            },
            m.vlcm.num_params() + m.concat.num_params(),
            true,
            f.vlcm,
        ),
        row("decoder", m.decoder.num_params(), true, f.decoder),
    ];
    Ok(ModelInfo {
        image_size: cfg.image_size,
        total_params: modules.iter().map(|r| r.params).sum(),
        trainable_params: modules.iter().map(|r| r.trainable).sum(),
        total_flops: modules.iter().map(|r| r.flops).sum(),
        modules,
    })
}

/// FLOPs per image of each module (multiply-adds × 2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flops {
    /// CLIP's vision tower.
    pub vision: f64,
    /// SSE's adapters inside the ViT.
    pub sse_adapters: f64,
    /// SSE's CNN branch.
    pub cnn: f64,
    /// SSE's fusion levels.
    pub fusion: f64,
    /// CLIP's text tower over the report.
    pub text: f64,
    /// DATE's adapters inside the text tower.
    pub date_adapters: f64,
    /// DATE's knowledge fusion, and the passages' encoding when the text tower is trainable.
    pub date_knowledge: f64,
    /// VLCM (or the concatenation fusion).
    pub vlcm: f64,
    /// The decoder.
    pub decoder: f64,
}

/// Multiply-adds of a transformer of `layers` blocks over `t` tokens of width `d` with MLP width `m`.
fn transformer_macs(layers: usize, t: usize, d: usize, m: usize) -> f64 {
    let (t, d, m) = (t as f64, d as f64, m as f64);
    layers as f64 * (4.0 * t * d * d + 2.0 * t * t * d + 2.0 * t * d * m)
}

/// Multiply-adds of a k×k convolution producing h×w×c_out from c_in.
fn conv_macs(h: usize, w: usize, c_in: usize, c_out: usize, k: usize) -> f64 {
    (h * w * c_in * c_out * k * k) as f64
}

/// Analytic FLOPs per image for `cfg` at its image size.
pub fn flops(cfg: &TgcNetConfig) -> Flops {
    let s = cfg.image_size;
    let v = &cfg.clip.model.vision;
    let t = &cfg.clip.model.text;
    let at = |k: usize| s.div_ceil(k);
    let grid = s / v.patch_size.max(1);
    let n = grid * grid;
    let tokens = n + 1;
    let mut f = Flops::default();
    let mac = 2.0; // FLOPs per multiply-add

    f.vision = mac
        * ((n * v.width * 3 * v.patch_size * v.patch_size) as f64
            + transformer_macs(v.layers, tokens, v.width, v.mlp_dim));
    if cfg.sse.adapters {
        f.sse_adapters = mac * (v.layers * tokens * 2 * v.width * cfg.sse.adapter_width) as f64;
    }
    let [c2, c4, c8, c16] = [0, 1, 2, 3].map(|i| cfg.sse.cnn_channels.get(i).copied().unwrap_or(0));
    if cfg.sse.cnn {
        let stage = |size: usize, c_in: usize, c_out: usize| {
            conv_macs(size, size, c_in, c_out, 3) + conv_macs(size, size, c_out, c_out, 3)
        };
        f.cnn = mac
            * (stage(at(2), 3, c2)
                + stage(at(4), c2, c4)
                + stage(at(8), c4, c8)
                + stage(at(16), c8, c16));
    }
    for (c, k) in [(c4, 4), (c8, 8), (c16, 16)] {
        let gate = if cfg.sse.cnn {
            conv_macs(at(k), at(k), 2 * c, c, 1)
        } else {
            0.0
        };
        f.fusion += mac * ((n * v.width * c) as f64 + gate);
    }

    if cfg.text {
        let l = t.context_length;
        let dt = t.width;
        let tower = transformer_macs(t.layers, l, dt, t.mlp_dim);
        f.text = mac * tower;
        if cfg.date.adapters {
            f.date_adapters = mac * (t.layers * l * 2 * dt * cfg.date.adapter_width) as f64;
        }
        if cfg.date.knowledge {
            let p = ASSUMED_PASSAGES;
            let (lf, pf, df) = (l as f64, p as f64, dt as f64);
            let fusion = 2.0 * lf * df * df + 2.0 * pf * df * df + 2.0 * lf * pf * df;
            let encode = if cfg.clip.freeze_text {
                0.0
            } else {
                pf * tower
            };
            f.date_knowledge = mac * (fusion + encode);
        }
        for &k in &cfg.vlcm.scales {
            let c = match k {
                4 => c4,
                8 => c8,
                _ => c16,
            };
            let hw = (at(k) * at(k)) as f64;
            let (c, d, lf, dtf) = (c as f64, cfg.vlcm.dim as f64, l as f64, dt as f64);
            f.vlcm += mac
                * if cfg.vlcm.enabled {
                    hw * c * d                                      // pixel projection
                        + (lf + 1.0) * dtf * d                      // text projection (tokens + sentence)
                        + hw * d                                    // cosine similarity
                        + 2.0 * hw * d * d + 2.0 * lf * d * d + 2.0 * hw * lf * d // pixels ← text
                        + 2.0 * lf * d * d + 2.0 * hw * d * d + 2.0 * lf * hw * d // text ← pixels
                        + 2.0 * d * d                               // FiLM
                        + hw * d * c // back to C
                } else {
                    hw * (c + dtf) * c
                };
        }
    }

    let d = |i: usize| cfg.decoder.channels.get(i).copied().unwrap_or(0);
    let (d8, d4, d2) = (d(0), d(1), d(2));
    let skip2 = if cfg.sse.cnn { c2 } else { 0 };
    let stage = |size: usize, c_in: usize, c_out: usize| {
        conv_macs(size, size, c_in, c_out, 3) + conv_macs(size, size, c_out, c_out, 3)
    };
    f.decoder = mac
        * (stage(at(8), c16 + c8, d8)
            + stage(at(4), d8 + c4, d4)
            + stage(at(2), d4 + skip2, d2)
            + conv_macs(at(2), at(2), d2, 1, 1));
    let r = cfg.decoder.refine;
    if r > 0 {
        f.decoder += mac * (stage(at(1), d2 + 3, r) + conv_macs(at(1), at(1), r, 1, 1));
    }
    f
}

impl std::fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<16} {:>14} {:>14} {:>14}",
            "module", "params", "trainable", "GFLOPs/image"
        )?;
        for m in &self.modules {
            writeln!(
                f,
                "{:<16} {:>14} {:>14} {:>14.3}",
                m.name,
                group_digits(m.params),
                group_digits(m.trainable),
                m.flops / 1e9
            )?;
        }
        writeln!(
            f,
            "{:<16} {:>14} {:>14} {:>14.3}",
            "total",
            group_digits(self.total_params),
            group_digits(self.trainable_params),
            self.total_flops / 1e9
        )?;
        write!(
            f,
            "FLOPs: multiply-adds x 2 per {0}x{0} image (convs, linears, attention matmuls); DATE assumes {1} matched passages.",
            self.image_size, ASSUMED_PASSAGES
        )
    }
}

/// 1234567 → "1,234,567".
pub fn group_digits(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_preset_stays_under_ten_million_trainable() {
        let info = model_info(&TgcNetConfig::paper(), &Device::flex()).expect("info");
        println!("paper preset:\n{info}");
        assert!(
            info.trainable_params < 10_000_000,
            "{}",
            info.trainable_params
        );
        assert!(info.trainable_params > 1_000_000);
        // ViT-B/16 + text tower: about 86 M + 63 M frozen (without CLIP's projections).
        assert!(info.total_params > 140_000_000, "{}", info.total_params);
    }

    #[test]
    fn vit_b16_flops_match_the_published_count() {
        // ViT-B/16 at 224: 17.58 GMACs (fvcore, as in the ViT/DeiT papers' "FLOPs" column).
        let f = flops(&TgcNetConfig::paper());
        let gmacs = f.vision / 2e9;
        assert!((gmacs - 17.58).abs() < 0.1, "{gmacs}");
    }

    #[test]
    fn counts_agree_with_the_checkpoint_and_small_preset() {
        let dev = Device::flex();
        for cfg in [TgcNetConfig::tiny(), TgcNetConfig::small()] {
            let info = model_info(&cfg, &dev).expect("info");
            let model = TgcNet::init(&cfg, &dev).expect("init");
            let n: usize = model
                .trainable_params()
                .values()
                .map(|t| t.data.len())
                .sum();
            assert_eq!(n, info.trainable_params);
            assert_eq!(model.num_params(), info.total_params);
            println!("{info}");
        }
        assert_eq!(group_digits(1234567), "1,234,567");
        assert_eq!(group_digits(12), "12");
    }
}
