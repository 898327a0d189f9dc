//! VLCM, the Vision-Language Calibration Module of TGC-Net (Lin et al., 2025, arXiv 2512.21135): the paper
//! "refines cross-modal correspondence in a unified feature space". The layers are our reconstruction (R),
//! applied at the pyramid levels named by [`VlcmConfig::scales`] (default 1/16 and 1/8):
//!
//! 1. pixels (1×1 projection of the level, C → d) and text tokens (Dt → d, one projection for tokens and
//!    sentence) land in one d-dimensional space;
//! 2. similarity map `S = τ · cos(pixel, sentence) + β` [B, 1, h, w], τ = exp(learned log τ, init ln 10,
//!    capped at 100), β learned (init 0) because lesions cover a small part of the image;
//! 3. bidirectional cross-attention, pre-LayerNorm with residuals: pixels ← text tokens (padding after the
//!    end token masked), then text ← the updated pixels;
//! 4. FiLM from the pixel-calibrated sentence (the updated end token): `X ⊙ (1 + a(s)) + b(s)` with `a`, `b`
//!    linear and zero-initialised, so FiLM starts as the identity;
//! 5. back to C channels, residual with the level, then `· (1 + σ(S))`. S is returned for the auxiliary
//!    loss and as the text-driven heatmap.
//!
//! Switched off ([`VlcmConfig::enabled`] = false) the text enters as in plain concatenation baselines:
//! the sentence embedding, broadcast over the grid, is concatenated with the level and mixed by a 1×1 conv.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::attention::CrossAttention;
use crate::blocks::{LN_EPS, map_to_tokens, tokens_to_map};
use crate::date::TextFeatures;
use tgcnet_kernels::{layer_norm, linear};

/// Switches and sizes of VLCM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VlcmConfig {
    /// VLCM; off: concatenation of the sentence embedding + 1×1 conv at the same scales, no similarity map.
    pub enabled: bool,
    /// Width d of the joint space.
    pub dim: usize,
    /// Heads of both cross-attentions (must divide `dim`).
    pub heads: usize,
    /// Pyramid levels to calibrate, as 1/scale: any of 4, 8, 16.
    pub scales: Vec<usize>,
    /// Initial similarity temperature τ.
    pub init_temperature: f64,
}

impl Default for VlcmConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dim: 256,
            heads: 8,
            scales: vec![16, 8],
            init_temperature: 10.0,
        }
    }
}

impl VlcmConfig {
    /// Checks the scales (distinct pyramid levels), that the heads divide the width and that τ is positive.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(s) = self.scales.iter().find(|s| ![4, 8, 16].contains(*s)) {
            return Err(format!("vlcm.scales: {s} is not one of 4, 8, 16"));
        }
        let mut sorted = self.scales.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.scales.len() {
            return Err(format!("vlcm.scales {:?} repeats a scale", self.scales));
        }
        if self.enabled
            && (self.dim == 0 || self.heads == 0 || !self.dim.is_multiple_of(self.heads))
        {
            return Err(format!(
                "vlcm.heads = {} must divide vlcm.dim = {}",
                self.heads, self.dim
            ));
        }
        if self.enabled && self.init_temperature <= 0.0 {
            return Err("vlcm.init_temperature must be positive".into());
        }
        Ok(())
    }
}

/// Upper bound of the similarity temperature (CLIP caps its logit scale at 100 too).
const MAX_LOG_TEMPERATURE: f64 = 4.605_170_185_988_091; // ln 100

/// VLCM at one pyramid level.
#[derive(Module, Debug)]
pub struct Vlcm {
    /// Pixels of the level (C) into the joint space (d).
    pub pixel_proj: Linear,
    /// Text tokens and sentence (Dt) into the joint space (d).
    pub text_proj: Linear,
    /// ln τ of the similarity map (capped at ln 100 in use).
    pub log_temperature: Param<Tensor<1>>,
    /// β of the similarity map.
    pub sim_bias: Param<Tensor<1>>,
    /// Layer norm of the pixels before they attend to the text.
    pub pixel_norm: LayerNorm,
    /// Layer norm of the text tokens as keys and values for the pixels.
    pub text_norm: LayerNorm,
    /// Pixels ← text tokens.
    pub pixels_from_text: CrossAttention,
    /// Layer norm of the text tokens before they attend to the pixels.
    pub text_query_norm: LayerNorm,
    /// Layer norm of the updated pixels as keys and values for the text.
    pub pixel_context_norm: LayerNorm,
    /// Text tokens ← pixels.
    pub text_from_pixels: CrossAttention,
    /// FiLM scale a(s), zero-initialised.
    pub film_scale: Linear,
    /// FiLM shift b(s), zero-initialised.
    pub film_shift: Linear,
    /// Joint space (d) back to the level's channels (C).
    pub out_proj: Linear,
}

impl Vlcm {
    /// channels: the level's C; text_width: Dt.
    pub fn new(cfg: &VlcmConfig, channels: usize, text_width: usize, device: &Device) -> Self {
        let d = cfg.dim;
        let ln = || LayerNormConfig::new(d).with_epsilon(LN_EPS).init(device);
        let zero = || {
            LinearConfig::new(d, d)
                .with_initializer(Initializer::Zeros)
                .init(device)
        };
        Self {
            pixel_proj: LinearConfig::new(channels, d).init(device),
            text_proj: LinearConfig::new(text_width, d).init(device),
            log_temperature: Initializer::Constant {
                value: cfg.init_temperature.ln(),
            }
            .init([1], device),
            sim_bias: Initializer::Zeros.init([1], device),
            pixel_norm: ln(),
            text_norm: ln(),
            pixels_from_text: CrossAttention::new(d, d, d, cfg.heads, device),
            text_query_norm: ln(),
            pixel_context_norm: ln(),
            text_from_pixels: CrossAttention::new(d, d, d, cfg.heads, device),
            film_scale: zero(),
            film_shift: zero(),
            out_proj: LinearConfig::new(d, channels).init(device),
        }
    }

    /// features: [B, C, h, w]; text: DATE's output. Returns the calibrated level [B, C, h, w] and the
    /// similarity map S [B, 1, h, w] (logits).
    pub fn forward(&self, features: Tensor<4>, text: &TextFeatures) -> (Tensor<4>, Tensor<4>) {
        let [b, _, h, w] = features.dims();
        let x = linear(&self.pixel_proj, map_to_tokens(features.clone())); // [B, hw, d]
        let t = linear(&self.text_proj, text.tokens.clone()); // [B, L, d]
        let d = x.dims()[2];
        let s = linear(&self.text_proj, text.sentence.clone()).reshape([b, 1, d]);

        let cos = unit(x.clone()).matmul(unit(s).swap_dims(1, 2)); // [B, hw, 1]
        let tau = self
            .log_temperature
            .val()
            .clamp_max(MAX_LOG_TEMPERATURE)
            .exp()
            .reshape([1, 1, 1]);
        let sim = cos * tau + self.sim_bias.val().reshape([1, 1, 1]);
        let sim = tokens_to_map(sim, h, w); // [B, 1, h, w]

        let x = x.clone()
            + self.pixels_from_text.forward(
                layer_norm(&self.pixel_norm, x, LN_EPS),
                layer_norm(&self.text_norm, t.clone(), LN_EPS),
                Some(text.padding.clone()),
            );
        let t = t.clone()
            + self.text_from_pixels.forward(
                layer_norm(&self.text_query_norm, t, LN_EPS),
                layer_norm(&self.pixel_context_norm, x.clone(), LN_EPS),
                None,
            );
        let index = text.eot.clone().reshape([b, 1, 1]).expand([b, 1, d]);
        let s = t.gather(1, index); // [B, 1, d]
        let x =
            x.clone() * (linear(&self.film_scale, s.clone()) + 1.0) + linear(&self.film_shift, s);
        let y = features + tokens_to_map(linear(&self.out_proj, x), h, w);
        let out = y * (sigmoid(sim.clone()) + 1.0);
        (out, sim)
    }
}

/// Rows divided by their L2 norm (ε keeps zero rows finite). x: [B, N, d]
fn unit(x: Tensor<3>) -> Tensor<3> {
    let norm = x.clone().powi_scalar(2).sum_dim(2).add_scalar(1e-12).sqrt();
    x / norm
}

/// The VLCM-off text path: concat(level, broadcast sentence) → 1×1 conv.
#[derive(Module, Debug)]
pub struct ConcatFusion {
    /// 1×1 convolution over [level; sentence] back to the level's channels.
    pub proj: Conv2d,
}

impl ConcatFusion {
    /// A fusion for a level of `channels` and a sentence of `text_width`.
    pub fn new(channels: usize, text_width: usize, device: &Device) -> Self {
        Self {
            proj: Conv2dConfig::new([channels + text_width, channels], [1, 1]).init(device),
        }
    }

    /// features: [B, C, h, w]; sentence: [B, Dt] → [B, C, h, w]
    pub fn forward(&self, features: Tensor<4>, sentence: Tensor<2>) -> Tensor<4> {
        let [b, _, h, w] = features.dims();
        let dt = sentence.dims()[1];
        let s = sentence.reshape([b, dt, 1, 1]).expand([b, dt, h, w]);
        tgcnet_kernels::conv2d(&self.proj, Tensor::cat(vec![features, s], 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, perturb_params, rand};
    use burn::tensor::{Bool, Int, TensorData};

    fn text(dev: &Device) -> TextFeatures {
        let eot = Tensor::<1, Int>::from_data(TensorData::new(vec![2i64, 4], [2]), dev);
        let padding = Tensor::<2, Bool>::from_data(
            TensorData::new(
                vec![
                    false, false, false, true, true, false, false, false, false, false,
                ],
                [2, 5],
            ),
            dev,
        );
        TextFeatures {
            tokens: rand([2, 5, 12], dev),
            sentence: rand([2, 12], dev),
            eot,
            padding,
        }
    }

    fn cfg() -> VlcmConfig {
        VlcmConfig {
            dim: 8,
            heads: 2,
            ..Default::default()
        }
    }

    #[test]
    fn shapes_and_concat_path() {
        let dev = Device::flex();
        let v = Vlcm::new(&cfg(), 6, 12, &dev);
        let t = text(&dev);
        let (y, s) = v.forward(rand([2, 6, 3, 4], &dev), &t);
        assert_eq!(y.dims(), [2, 6, 3, 4]);
        assert_eq!(s.dims(), [2, 1, 3, 4]);
        let c = ConcatFusion::new(6, 12, &dev);
        assert_eq!(
            c.forward(rand([2, 6, 3, 4], &dev), t.sentence).dims(),
            [2, 6, 3, 4]
        );
    }

    #[test]
    fn finite_difference_vlcm() {
        let dev = Device::flex().autodiff();
        let v = perturb_params(Vlcm::new(&cfg(), 6, 12, &dev), 0.3);
        let t = text(&dev);
        let x = rand([2, 6, 3, 3], &dev);
        let w = rand([2, 6, 3, 3], &dev);
        let ws = rand([2, 1, 3, 3], &dev);
        let score = |(y, s): (Tensor<4>, Tensor<4>)| (y * w.clone()).sum() + (s * ws.clone()).sum();
        let f = |x: Tensor<4>| score(v.forward(x, &t));
        check_grad("VLCM (pixels)", &f, x.clone(), 1e-2);
        let g = |tokens: Tensor<3>| {
            let tf = TextFeatures {
                tokens,
                ..t.clone()
            };
            score(v.forward(x.clone(), &tf))
        };
        check_grad("VLCM (text tokens)", &g, t.tokens.clone(), 1e-2);
        let h = |sentence: Tensor<2>| {
            let tf = TextFeatures {
                sentence,
                ..t.clone()
            };
            score(v.forward(x.clone(), &tf))
        };
        check_grad("VLCM (sentence)", &h, t.sentence.clone(), 1e-2);
    }

    #[test]
    fn padded_tokens_do_not_reach_the_pixels() {
        let dev = Device::flex();
        let v = perturb_params(Vlcm::new(&cfg(), 6, 12, &dev), 0.3);
        let t = text(&dev);
        let x = rand([2, 6, 3, 3], &dev);
        let (y1, _) = v.forward(x.clone(), &t);
        // Report 0 ends at token 2: tokens 3 and 4 are padding.
        let noise = rand([2, 5, 12], &dev);
        let keep = Tensor::<3>::from_data(
            TensorData::new(
                [
                    [1.0f32; 12],
                    [1.0; 12],
                    [1.0; 12],
                    [0.0; 12],
                    [0.0; 12],
                    [1.0; 12],
                    [1.0; 12],
                    [1.0; 12],
                    [1.0; 12],
                    [1.0; 12],
                ]
                .concat(),
                [2, 5, 12],
            ),
            &dev,
        );
        let tokens = t.tokens.clone() * keep.clone() + noise * (keep * -1.0 + 1.0);
        let (y2, _) = v.forward(x, &TextFeatures { tokens, ..t });
        let diff = (y1 - y2).abs().max().into_scalar::<f32>();
        assert!(diff < 1e-5, "{diff}");
    }
}
