//! SSE, the Semantic-Structural Synergy Encoder of TGC-Net (Lin et al., 2025, arXiv 2512.21135): the paper
//! "augments CLIP's ViT with a CNN branch for multi-scale structural refinement". Everything below the
//! sentence is our reconstruction (R), each part behind a switch of [`SseConfig`]:
//!
//! - bottleneck adapters after every ViT block ([`crate::adapter`]), through the tower's layer hook;
//! - a CNN branch: stem at 1/2, then stride-2 stages at 1/4, 1/8, 1/16 (two conv3x3-GroupNorm-ReLU each);
//! - gated multi-scale fusion: three ViT taps (default after blocks 4, 8, 12), class token dropped, LayerNorm,
//!   linear projection to the CNN width of their scale, bilinear resize to it (deepest tap → 1/16, middle →
//!   1/8, shallowest → 1/4), then `P = C + α ⊙ σ(W_g [C; V]) ⊙ V`, with `W_g` a 1×1 conv over both maps and
//!   `α` a per-channel scale initialised to 0. At step 0 the pyramid is the CNN's alone and `α` gets the
//!   gradient `σ(·) ⊙ V ⊙ ∂L/∂P` (non-zero), so the gate opens as soon as the ViT term helps; `W_g` and the
//!   projection receive gradients from the first update of `α` on.
//! - without the CNN branch the pyramid is the projected, resized taps alone.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use tgcnet_clip::ClipVisionTransformer;

use crate::adapter::{AdapterConfig, AdapterStack};
use crate::blocks::{DoubleConv, LN_EPS, resize, tokens_to_map};
use tgcnet_kernels::linear;

/// Switches and sizes of SSE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SseConfig {
    /// Bottleneck adapters after every ViT block.
    pub adapters: bool,
    /// Adapter bottleneck width.
    pub adapter_width: usize,
    /// Adapter output multiplier.
    pub adapter_scale: f64,
    /// 1-based ViT blocks whose outputs feed the pyramid, shallowest first: [→1/4, →1/8, →1/16].
    pub taps: Vec<usize>,
    /// The CNN branch; off: the pyramid comes from the ViT taps alone.
    pub cnn: bool,
    /// Channels at 1/2 (stem), 1/4, 1/8, 1/16. The last three are the pyramid's channels, with or without CNN.
    pub cnn_channels: Vec<usize>,
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            adapters: true,
            adapter_width: 64,
            adapter_scale: 1.0,
            taps: vec![4, 8, 12],
            cnn: true,
            cnn_channels: vec![32, 64, 128, 256],
        }
    }
}

impl SseConfig {
    /// The ViT adapters' sizes.
    pub fn adapter(&self) -> AdapterConfig {
        AdapterConfig {
            width: self.adapter_width,
            scale: self.adapter_scale,
        }
    }

    /// Channels of P4, P8, P16.
    pub fn pyramid_channels(&self) -> [usize; 3] {
        let c = |i: usize| self.cnn_channels.get(i).copied().unwrap_or(0);
        [c(1), c(2), c(3)]
    }

    /// Checks the taps against the tower depth and the channel list's length.
    pub fn validate(&self, vision_layers: usize) -> std::result::Result<(), String> {
        if self.taps.len() != 3 {
            return Err(format!(
                "sse.taps must name 3 blocks (for 1/4, 1/8, 1/16), got {:?}",
                self.taps
            ));
        }
        if self.taps.iter().any(|&t| t == 0 || t > vision_layers) {
            return Err(format!(
                "sse.taps {:?}: blocks are 1-based and the vision tower has {vision_layers}",
                self.taps
            ));
        }
        if self.taps.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!("sse.taps {:?} must be shallowest first", self.taps));
        }
        if self.cnn_channels.len() != 4 || self.cnn_channels.contains(&0) {
            return Err(format!(
                "sse.cnn_channels must be 4 positive widths (1/2, 1/4, 1/8, 1/16), got {:?}",
                self.cnn_channels
            ));
        }
        if self.adapters && self.adapter_width == 0 {
            return Err("sse.adapter_width must be positive".into());
        }
        Ok(())
    }
}

/// The multi-scale features SSE hands to the decoder.
#[derive(Debug, Clone)]
pub struct Pyramid {
    /// CNN stem at 1/2: [B, c2, S/2, S/2] (present only with the CNN branch).
    pub p2: Option<Tensor<4>>,
    /// [B, c4, S/4, S/4]
    pub p4: Tensor<4>,
    /// [B, c8, S/8, S/8]
    pub p8: Tensor<4>,
    /// [B, c16, S/16, S/16]
    pub p16: Tensor<4>,
}

impl Pyramid {
    /// The level at 1/`scale` (4, 8 or 16).
    pub fn level(&self, scale: usize) -> Option<&Tensor<4>> {
        match scale {
            4 => Some(&self.p4),
            8 => Some(&self.p8),
            16 => Some(&self.p16),
            _ => None,
        }
    }

    /// Replaces the level at 1/`scale` (4, 8 or 16); other scales are ignored.
    pub fn set_level(&mut self, scale: usize, x: Tensor<4>) {
        match scale {
            4 => self.p4 = x,
            8 => self.p8 = x,
            16 => self.p16 = x,
            _ => {}
        }
    }
}

/// The CNN branch's maps, each [B, c, S/k, S/k].
#[derive(Debug, Clone)]
pub struct CnnMaps {
    /// Stem output at 1/2.
    pub x2: Tensor<4>,
    /// 1/4.
    pub x4: Tensor<4>,
    /// 1/8.
    pub x8: Tensor<4>,
    /// 1/16.
    pub x16: Tensor<4>,
}

/// The CNN branch: stem at 1/2, then one stride-2 stage per scale.
#[derive(Module, Debug)]
pub struct CnnBranch {
    /// Stride-2 stage from the image to 1/2.
    pub stem: DoubleConv,
    /// Stride-2 stage to 1/4.
    pub down4: DoubleConv,
    /// Stride-2 stage to 1/8.
    pub down8: DoubleConv,
    /// Stride-2 stage to 1/16.
    pub down16: DoubleConv,
}

impl CnnBranch {
    /// channels: [c2, c4, c8, c16].
    pub fn new(channels: [usize; 4], device: &Device) -> Self {
        let [c2, c4, c8, c16] = channels;
        Self {
            stem: DoubleConv::new(3, c2, 2, device),
            down4: DoubleConv::new(c2, c4, 2, device),
            down8: DoubleConv::new(c4, c8, 2, device),
            down16: DoubleConv::new(c8, c16, 2, device),
        }
    }

    /// pixels: [B, 3, S, S] → maps at 1/2, 1/4, 1/8, 1/16.
    pub fn forward(&self, pixels: Tensor<4>) -> CnnMaps {
        let x2 = self.stem.forward(pixels);
        let x4 = self.down4.forward(x2.clone());
        let x8 = self.down8.forward(x4.clone());
        let x16 = self.down16.forward(x8.clone());
        CnnMaps { x2, x4, x8, x16 }
    }
}

/// One pyramid level: a ViT tap projected to the level's width, resized to its scale and, with the CNN
/// branch, added to the CNN map through the zero-initialised gate.
#[derive(Module, Debug)]
pub struct FusionLevel {
    /// Layer norm of the ViT tokens.
    pub norm: LayerNorm,
    /// Projection of the ViT tokens to the level's channels.
    pub proj: Linear,
    /// 1×1 conv over [CNN; ViT] → per-pixel, per-channel gate logits (present with the CNN branch).
    pub gate: Option<Conv2d>,
    /// Per-channel opening of the gate, zero-initialised (present with the CNN branch).
    pub alpha: Option<Param<Tensor<1>>>,
}

impl FusionLevel {
    /// A level fusing ViT tokens of `vit_width` into `channels`; the gate exists only `with_cnn`.
    pub fn new(vit_width: usize, channels: usize, with_cnn: bool, device: &Device) -> Self {
        Self {
            norm: LayerNormConfig::new(vit_width)
                .with_epsilon(LN_EPS)
                .init(device),
            proj: LinearConfig::new(vit_width, channels).init(device),
            gate: with_cnn
                .then(|| Conv2dConfig::new([2 * channels, channels], [1, 1]).init(device)),
            alpha: with_cnn.then(|| Initializer::Zeros.init([channels], device)),
        }
    }

    /// tap: [B, 1 + gh·gw, D] (class token first); cnn: [B, C, h, w] when the branch is on.
    /// Returns [B, C, size[0], size[1]].
    pub fn forward(
        &self,
        tap: Tensor<3>,
        grid: (usize, usize),
        cnn: Option<Tensor<4>>,
        size: [usize; 2],
    ) -> Tensor<4> {
        let [b, n, d] = tap.dims();
        let patches = tap.narrow(1, 1, n - 1).reshape([b, n - 1, d]);
        let v = linear(
            &self.proj,
            tgcnet_kernels::layer_norm(&self.norm, patches, LN_EPS),
        );
        let v = resize(tokens_to_map(v, grid.0, grid.1), size);
        match (cnn, &self.gate, &self.alpha) {
            (Some(c), Some(gate), Some(alpha)) => {
                let channels = alpha.dims()[0];
                let g = sigmoid(tgcnet_kernels::conv2d(
                    gate,
                    Tensor::cat(vec![c.clone(), v.clone()], 1),
                ));
                let a = alpha.val().reshape([1, channels, 1, 1]);
                c + g * v * a
            }
            (Some(c), _, _) => c + v,
            (None, _, _) => v,
        }
    }
}

/// SSE: adapters for the ViT, the CNN branch and the three fusion levels.
#[derive(Module, Debug)]
pub struct Sse {
    /// Bottleneck adapters inside the frozen ViT (`sse.adapters`).
    pub adapters: Option<AdapterStack>,
    /// The CNN branch (`sse.cnn`).
    pub cnn: Option<CnnBranch>,
    /// The 1/4 level.
    pub fuse4: FusionLevel,
    /// The 1/8 level.
    pub fuse8: FusionLevel,
    /// The 1/16 level.
    pub fuse16: FusionLevel,
    /// The ViT blocks (1-based) tapped for 1/4, 1/8 and 1/16.
    #[module(skip)]
    pub taps: [usize; 3],
}

impl Sse {
    /// `cfg` must have passed [`SseConfig::validate`].
    pub fn new(cfg: &SseConfig, vit_width: usize, vit_layers: usize, device: &Device) -> Self {
        let [c4, c8, c16] = cfg.pyramid_channels();
        let level = |c: usize| FusionLevel::new(vit_width, c, cfg.cnn, device);
        let tap = |i: usize| cfg.taps.get(i).copied().unwrap_or(vit_layers);
        Self {
            adapters: cfg
                .adapters
                .then(|| AdapterStack::new(vit_width, vit_layers, &cfg.adapter(), device)),
            cnn: cfg.cnn.then(|| {
                let c2 = cfg.cnn_channels.first().copied().unwrap_or(c4);
                CnnBranch::new([c2, c4, c8, c16], device)
            }),
            fuse4: level(c4),
            fuse8: level(c8),
            fuse16: level(c16),
            taps: [tap(0), tap(1), tap(2)],
        }
    }

    /// Runs the (frozen) ViT with the adapters in its hook, the CNN branch, and fuses.
    /// pixels: [B, 3, S, S], CLIP-normalised, S a multiple of 16 and of the patch size.
    pub fn forward(&self, vit: &ClipVisionTransformer, pixels: Tensor<4>) -> Pyramid {
        let hook = |layer: usize, x: Tensor<3>| match &self.adapters {
            Some(a) => a.apply(layer, x),
            None => x,
        };
        let out = vit.forward(pixels.clone(), &self.taps, Some(&hook));
        let cnn = self.cnn.as_ref().map(|c| c.forward(pixels.clone()));
        let [_, _, h, w] = pixels.dims();
        let last = out.last_hidden;
        let mut taps = out.taps.into_iter();
        // The tower returns one tap per requested block; the fallback only guards the type.
        let taps: [Tensor<3>; 3] =
            std::array::from_fn(|_| taps.next().unwrap_or_else(|| last.clone()));
        self.fuse(taps, out.grid, cnn, [h, w])
    }

    /// Fusion alone. taps: [B, 1 + gh·gw, D] each, shallowest first (→ 1/4, 1/8, 1/16); grid: (gh, gw);
    /// cnn: the branch's maps; image: the input's [S_h, S_w].
    pub fn fuse(
        &self,
        taps: [Tensor<3>; 3],
        grid: (usize, usize),
        cnn: Option<CnnMaps>,
        image: [usize; 2],
    ) -> Pyramid {
        let size = |k: usize| [image[0].div_ceil(k), image[1].div_ceil(k)];
        let [t4, t8, t16] = taps;
        let (p2, c4, c8, c16) = match cnn {
            Some(m) => (Some(m.x2), Some(m.x4), Some(m.x8), Some(m.x16)),
            None => (None, None, None, None),
        };
        Pyramid {
            p2,
            p4: self.fuse4.forward(t4, grid, c4, size(4)),
            p8: self.fuse8.forward(t8, grid, c8, size(8)),
            p16: self.fuse16.forward(t16, grid, c16, size(16)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, perturb_params, rand};

    fn tiny_cfg(cnn: bool) -> SseConfig {
        SseConfig {
            adapters: true,
            adapter_width: 4,
            adapter_scale: 1.0,
            taps: vec![1, 2, 3],
            cnn,
            cnn_channels: vec![4, 8, 8, 16],
        }
    }

    fn maps(b: usize, dev: &Device) -> CnnMaps {
        CnnMaps {
            x2: rand([b, 4, 16, 16], dev),
            x4: rand([b, 8, 8, 8], dev),
            x8: rand([b, 8, 4, 4], dev),
            x16: rand([b, 16, 2, 2], dev),
        }
    }

    fn taps(b: usize, dev: &Device) -> [Tensor<3>; 3] {
        std::array::from_fn(|_| rand([b, 17, 32], dev))
    }

    #[test]
    fn pyramid_shapes_with_and_without_cnn() {
        let dev = Device::flex();
        let clip = crate::config::TgcNetConfig::tiny().clip.model;
        let vit = ClipVisionTransformer::new(&clip, &dev);
        let x = rand([2, 3, 32, 32], &dev);
        for cnn in [true, false] {
            let sse = Sse::new(&tiny_cfg(cnn), 32, 3, &dev);
            let p = sse.forward(&vit, x.clone());
            assert_eq!(p.p4.dims(), [2, 8, 8, 8]);
            assert_eq!(p.p8.dims(), [2, 8, 4, 4]);
            assert_eq!(p.p16.dims(), [2, 16, 2, 2]);
            assert_eq!(p.p2.map(|t| t.dims()), cnn.then_some([2, 4, 16, 16]));
        }
    }

    #[test]
    fn gate_starts_closed_and_alpha_gets_a_gradient() {
        let dev = Device::flex().autodiff();
        let sse = Sse::new(&tiny_cfg(true), 32, 3, &dev);
        let cnn = maps(2, &dev);
        let p = sse.fuse(taps(2, &dev), (4, 4), Some(cnn.clone()), [32, 32]);
        let diff = (p.p8.clone() - cnn.x8.clone())
            .abs()
            .max()
            .into_scalar::<f32>();
        assert_eq!(diff, 0.0, "zero-initialised gate: P8 is the CNN map");
        let loss = p.p4.powi_scalar(2).sum() + p.p8.sum() + p.p16.powi_scalar(2).sum();
        let grads = loss.backward();
        for level in [&sse.fuse4, &sse.fuse8, &sse.fuse16] {
            let alpha = level.alpha.as_ref().expect("alpha");
            let g = alpha.grad(&grads).expect("alpha grad");
            assert!(g.abs().sum().into_scalar::<f32>() > 0.0);
        }
    }

    #[test]
    fn finite_difference_fusion() {
        let dev = Device::flex().autodiff();
        let sse = perturb_params(Sse::new(&tiny_cfg(true), 32, 3, &dev), 0.5);
        let taps = taps(1, &dev);
        let cnn = maps(1, &dev);
        let w = [
            rand([1, 8, 8, 8], &dev),
            rand([1, 8, 4, 4], &dev),
            rand([1, 16, 2, 2], &dev),
        ];
        let score = |p: Pyramid| {
            (p.p4 * w[0].clone()).sum() + (p.p8 * w[1].clone()).sum() + (p.p16 * w[2].clone()).sum()
        };
        let f = |tap: Tensor<3>| {
            let mut t = taps.clone();
            t[1] = tap;
            score(sse.fuse(t, (4, 4), Some(cnn.clone()), [32, 32]))
        };
        check_grad("SSE fusion (middle tap)", &f, taps[1].clone(), 1e-2);
        let g = |x8: Tensor<4>| {
            let c = CnnMaps { x8, ..cnn.clone() };
            score(sse.fuse(taps.clone(), (4, 4), Some(c), [32, 32]))
        };
        check_grad("SSE fusion (CNN map)", &g, cnn.x8.clone(), 1e-2);
    }

    #[test]
    fn finite_difference_cnn_branch() {
        let dev = Device::flex().autodiff();
        let cnn = perturb_params(CnnBranch::new([4, 8, 8, 16], &dev), 0.2);
        // 64 px so that the 1/16 map has 4×4 pixels: GroupNorm over a group of 2 values is a sign function,
        // too curved for a finite difference.
        let x = rand([1, 3, 64, 64], &dev);
        let w16 = rand([1, 16, 4, 4], &dev);
        let w8 = rand([1, 8, 8, 8], &dev);
        let f = |x: Tensor<4>| {
            let m = cnn.forward(x);
            (m.x16 * w16.clone()).sum() + (m.x8 * w8.clone()).sum()
        };
        check_grad("CNN branch", &f, x, 1e-2);
    }
}
