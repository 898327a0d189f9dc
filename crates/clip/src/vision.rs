//! CLIP's vision transformer (ViT; Dosovitskiy et al., 2021, as used by Radford et al., 2021).

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Distribution, Tensor};

use crate::config::{ClipConfig, ClipVisionConfig};
use crate::nn::{ClipEncoder, LayerHook};

/// Class token, patch and position embeddings of the vision tower (HF `CLIPVisionEmbeddings`).
#[derive(Module, Debug)]
pub struct ClipVisionEmbeddings {
    /// The class token's embedding.
    pub class_embedding: Param<Tensor<1>>,
    /// Patches to tokens: a convolution with kernel and stride of the patch size (no bias).
    pub patch_embedding: Conv2d,
    /// One row per position of the trained grid, class token first (resized for other grids).
    pub position_embedding: Embedding,
    /// Side of a patch in pixels.
    pub patch_size: usize,
}

impl ClipVisionEmbeddings {
    /// pixels: [B, 3, H, W] (H, W multiples of the patch size) → [B, 1 + (H/p)(W/p), D]
    pub fn forward(&self, pixels: Tensor<4>) -> Tensor<3> {
        let (patches, gh, gw) = self.patch_tokens(pixels);
        let [b, _, d] = patches.dims();
        let cls = self
            .class_embedding
            .val()
            .reshape([1, 1, d])
            .expand([b, 1, d]);
        let x = Tensor::cat(vec![cls, patches], 1);
        x + self.positions(gh, gw).unsqueeze::<3>()
    }

    /// The patch projection as tokens [B, gh·gw, D] and the grid (gh, gw). The projection is a conv with
    /// stride = kernel = p, so each output reads one patch and nothing else: it is computed as one
    /// matrix product of the flattened patches, [B·gh·gw, C·p·p] · Wᵀ (the same numbers; on the CPU
    /// backend a 16×16 / stride-16 conv through the general kernels costs 256 thin products, and burn's
    /// conv is a direct loop). Other conv settings (never CLIP's) use the conv itself.
    fn patch_tokens(&self, pixels: Tensor<4>) -> (Tensor<3>, usize, usize) {
        let conv = &self.patch_embedding;
        let [d, c, kh, kw] = conv.weight.dims();
        let [b, pc, h, w] = pixels.dims();
        let patchwise = conv.stride == [kh, kw]
            && conv.dilation == [1, 1]
            && conv.groups == 1
            && matches!(conv.padding, PaddingConfig2d::Valid)
            && pc == c
            && h % kh == 0
            && w % kw == 0;
        if !patchwise {
            let y = conv.forward(pixels);
            let [_, _, gh, gw] = y.dims();
            return (y.flatten::<3>(2, 3).swap_dims(1, 2), gh, gw);
        }
        let (gh, gw, k) = (h / kh, w / kw, c * kh * kw);
        // [B, C, gh, p, gw, p] → [B, gh, gw, C, p, p]: each row is one patch in the weight's (c, i, j) order.
        let rows = pixels
            .reshape([b, c, gh, kh, gw, kw])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([b * gh * gw, k]);
        let mut y = rows.matmul(conv.weight.val().reshape([d, k]).transpose());
        if let Some(bias) = &conv.bias {
            y = y + bias.val().reshape([1, d]);
        }
        (y.reshape([b, gh * gw, d]), gh, gw)
    }

    /// Positional embeddings for a gh×gw grid: [1 + gh·gw, D]. A grid other than the checkpoint's is
    /// bicubically resized (half-pixel centres), as OpenCLIP's `resize_pos_embed` and HF's
    /// `interpolate_pos_encoding` do when upsampling.
    pub fn positions(&self, gh: usize, gw: usize) -> Tensor<2> {
        let table = self.position_embedding.weight.val();
        let [n, d] = table.dims();
        let g = ((n - 1) as f64).sqrt().round() as usize;
        if g == gh && g == gw {
            return table;
        }
        let cls = table.clone().narrow(0, 0, 1);
        let grid = table
            .narrow(0, 1, n - 1)
            .reshape([1, g, g, d])
            .permute([0, 3, 1, 2]);
        let grid = interpolate(
            grid,
            InterpolateOptions::new(InterpolateMode::Bicubic)
                .with_align_corners(false)
                .with_output_size([gh, gw]),
        );
        let grid = grid.permute([0, 2, 3, 1]).reshape([gh * gw, d]);
        Tensor::cat(vec![cls, grid], 0)
    }
}

/// HF `CLIPVisionTransformer` (the field `pre_layrnorm` keeps HF's spelling so that keys match).
#[derive(Module, Debug)]
pub struct ClipVisionTransformer {
    /// Class token, patch and position embeddings.
    pub embeddings: ClipVisionEmbeddings,
    /// Layer norm before the transformer.
    pub pre_layrnorm: LayerNorm,
    /// The transformer blocks.
    pub encoder: ClipEncoder,
    /// Layer norm of the class token's output.
    pub post_layernorm: LayerNorm,
    /// The layer norms' epsilon (burn keeps the module's own private; the fused kernel needs it).
    pub ln_eps: f64,
}

/// What the vision tower returns.
pub struct VisionOutput {
    /// Token sequence after the requested blocks: each [B, 1 + N, D] (class token first).
    pub taps: Vec<Tensor<3>>,
    /// Post-LN class token: [B, D] (HF's `pooler_output`).
    pub pooled: Tensor<2>,
    /// Last block's output: [B, 1 + N, D].
    pub last_hidden: Tensor<3>,
    /// Patch grid (rows, cols).
    pub grid: (usize, usize),
}

impl ClipVisionTransformer {
    /// A randomly initialised vision tower of `cfg.vision`'s sizes.
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        let v: &ClipVisionConfig = &cfg.vision;
        let ln = || {
            LayerNormConfig::new(v.width)
                .with_epsilon(cfg.layer_norm_eps)
                .init(device)
        };
        let scale = (v.width as f64).powf(-0.5);
        Self {
            embeddings: ClipVisionEmbeddings {
                class_embedding: Param::from_tensor(Tensor::random(
                    [v.width],
                    Distribution::Normal(0.0, scale),
                    device,
                )),
                patch_embedding: Conv2dConfig::new([3, v.width], [v.patch_size, v.patch_size])
                    .with_stride([v.patch_size, v.patch_size])
                    .with_bias(false)
                    .init(device),
                position_embedding: EmbeddingConfig::new(v.num_positions(), v.width).init(device),
                patch_size: v.patch_size,
            },
            pre_layrnorm: ln(),
            encoder: ClipEncoder::new(
                v.width,
                v.layers,
                v.heads,
                v.mlp_dim,
                cfg.activation,
                cfg.layer_norm_eps,
                device,
            ),
            post_layernorm: ln(),
            ln_eps: cfg.layer_norm_eps,
        }
    }

    /// pixels: [B, 3, H, W], CLIP-normalised. `taps`: 1-based block indices.
    pub fn forward(
        &self,
        pixels: Tensor<4>,
        taps: &[usize],
        hook: Option<LayerHook<'_>>,
    ) -> VisionOutput {
        let [_, _, h, w] = pixels.dims();
        let p = self.embeddings.patch_size;
        let x = tgcnet_kernels::layer_norm(
            &self.pre_layrnorm,
            self.embeddings.forward(pixels),
            self.ln_eps,
        );
        let out = self.encoder.forward(x, false, taps, hook);
        let [b, _, d] = out.last.dims();
        let cls = out.last.clone().narrow(1, 0, 1).reshape([b, d]);
        VisionOutput {
            taps: out.taps,
            pooled: tgcnet_kernels::layer_norm(&self.post_layernorm, cls, self.ln_eps),
            last_hidden: out.last,
            grid: (h / p, w / p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_tokens_match_the_conv_with_gradients() {
        let dev = Device::flex().autodiff();
        let (c, d, p) = (3, 12, 8);
        let emb = ClipVisionEmbeddings {
            class_embedding: Param::from_tensor(Tensor::zeros([d], &dev)),
            patch_embedding: Conv2dConfig::new([c, d], [p, p])
                .with_stride([p, p])
                .init(&dev),
            position_embedding: EmbeddingConfig::new(17, d).init(&dev),
            patch_size: p,
        };
        let x = Tensor::<4>::random([2, c, 32, 24], Distribution::Normal(0.0, 1.0), &dev)
            .require_grad();
        let (fast, gh, gw) = emb.patch_tokens(x.clone());
        assert_eq!((gh, gw), (4, 3));
        let slow = emb
            .patch_embedding
            .forward(x.clone())
            .flatten::<3>(2, 3)
            .swap_dims(1, 2);
        let diff = |a: Tensor<3>, b: Tensor<3>| (a - b).abs().max().into_scalar::<f32>();
        let e = diff(fast.clone(), slow.clone());
        assert!(e < 1e-5, "tokens differ by {e}");
        let w = Tensor::<3>::random(fast.dims(), Distribution::Normal(0.0, 1.0), &dev);
        let gf = (fast * w.clone()).sum().backward();
        let gs = (slow * w).sum().backward();
        let (pw, pb) = (
            &emb.patch_embedding.weight,
            emb.patch_embedding
                .bias
                .as_ref()
                .map(|b| (b.grad(&gf), b.grad(&gs))),
        );
        let max = |t: Tensor<4>| t.abs().max().into_scalar::<f32>();
        let dw = max(pw.grad(&gf).unwrap() - pw.grad(&gs).unwrap());
        let dx = max(x.grad(&gf).unwrap() - x.grad(&gs).unwrap());
        assert!(
            dw < 1e-4 && dx < 1e-5,
            "gradients differ: weight {dw}, input {dx}"
        );
        if let Some((Some(a), Some(b))) = pb {
            let db = (a - b).abs().max().into_scalar::<f32>();
            assert!(db < 1e-4, "bias gradient differs by {db}");
        }
    }
}
