//! Decoder of TGC-Net (Lin et al., 2025, arXiv 2512.21135). The paper does not describe it; ours (R) is a
//! U-Net style decoder (Ronneberger et al., 2015): from P16, three stages (→ 1/8, → 1/4, → 1/2), each a
//! bilinear ×2 upsampling, concatenation with the pyramid level of that scale as skip (at 1/2 the CNN stem,
//! when SSE has its CNN branch) and two conv3x3-GroupNorm-ReLU; then a 1×1 conv to one logit and a
//! bilinear upsampling to the input size. (The 1×1 conv runs before the last upsampling: both are linear
//! and the interpolation weights sum to 1, so the order does not change the result, only the cost.)
//!
//! (R) An optional full-resolution refinement (`decoder.refine`, 0 = off): the 1/2 features upsampled to the
//! input size and concatenated with the input pixels, two conv3x3-GroupNorm-ReLU and a 1×1 conv whose output
//! is added to the logits. That 1×1 conv starts at zero, so a model with the stage computes exactly what the
//! model without it computes until training moves it: a checkpoint trained without it is a valid start
//! (`TgcNet::init_from`). Its purpose is the lesion boundary at the input's own resolution, where the
//! 1/2-resolution logits over-segment small lesions (docs/RESULTS.md).

use burn::module::Module;
use burn::nn::Initializer;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::blocks::{DoubleConv, resize};
use crate::sse::Pyramid;

/// Sizes of the decoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecoderConfig {
    /// Output channels of the stages at 1/8, 1/4 and 1/2.
    pub channels: Vec<usize>,
    /// Width of the full-resolution refinement stage; 0: none (the presets).
    pub refine: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            channels: vec![128, 64, 32],
            refine: 0,
        }
    }
}

impl DecoderConfig {
    /// Checks that there are three positive widths.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.channels.len() != 3 || self.channels.contains(&0) {
            return Err(format!(
                "decoder.channels must be 3 positive widths (1/8, 1/4, 1/2), got {:?}",
                self.channels
            ));
        }
        Ok(())
    }

    fn stage(&self, i: usize) -> usize {
        self.channels.get(i).copied().unwrap_or(1)
    }
}

/// U-Net style decoder: three ×2 stages with the pyramid as skips, then a 1×1 conv to one logit.
#[derive(Module, Debug)]
pub struct Decoder {
    /// Stage to 1/8: upsampled P16 with P8.
    pub up8: DoubleConv,
    /// Stage to 1/4: upsampled 1/8 with P4.
    pub up4: DoubleConv,
    /// Stage to 1/2: upsampled 1/4 with the CNN stem (when present).
    pub up2: DoubleConv,
    /// 1×1 convolution to the mask logit.
    pub head: Conv2d,
    /// Full-resolution refinement added to the logits (`decoder.refine` > 0).
    pub refine: Option<Refine>,
}

/// Full-resolution refinement: the 1/2 features with the input pixels → a correction of the logits.
#[derive(Module, Debug)]
pub struct Refine {
    /// Upsampled 1/2 features concatenated with the 3 input channels → `decoder.refine` channels.
    pub block: DoubleConv,
    /// 1×1 convolution to the logit correction, zero at initialisation.
    pub head: Conv2d,
}

impl Refine {
    fn new(c_half: usize, width: usize, device: &Device) -> Self {
        Self {
            block: DoubleConv::new(c_half + 3, width, 1, device),
            head: Conv2dConfig::new([width, 1], [1, 1])
                .with_initializer(Initializer::Zeros)
                .init(device),
        }
    }

    /// half: [B, C, ⌈H/2⌉, ⌈W/2⌉]; images: [B, 3, H, W] → correction [B, 1, H, W]
    fn forward(&self, half: Tensor<4>, images: Tensor<4>) -> Tensor<4> {
        let [_, _, h, w] = images.dims();
        let x = Tensor::cat(vec![resize(half, [h, w]), images], 1);
        tgcnet_kernels::conv2d(&self.head, self.block.forward(x))
    }
}

impl Decoder {
    /// pyramid: channels of P4, P8, P16; skip2: channels of the 1/2 skip (0 without the CNN branch).
    pub fn new(cfg: &DecoderConfig, pyramid: [usize; 3], skip2: usize, device: &Device) -> Self {
        let [c4, c8, c16] = pyramid;
        let (d8, d4, d2) = (cfg.stage(0), cfg.stage(1), cfg.stage(2));
        Self {
            up8: DoubleConv::new(c16 + c8, d8, 1, device),
            up4: DoubleConv::new(d8 + c4, d4, 1, device),
            up2: DoubleConv::new(d4 + skip2, d2, 1, device),
            head: Conv2dConfig::new([d2, 1], [1, 1]).init(device),
            refine: (cfg.refine > 0).then(|| Refine::new(d2, cfg.refine, device)),
        }
    }

    /// pyramid: SSE's levels (after VLCM); images: the model's input [B, 3, S_h, S_w] (read by the
    /// refinement stage only). Returns logits [B, 1, S_h, S_w].
    pub fn forward(&self, pyramid: &Pyramid, images: Tensor<4>) -> Tensor<4> {
        let [_, _, ih, iw] = images.dims();
        let image = [ih, iw];
        let size = |t: &Tensor<4>| {
            let [_, _, h, w] = t.dims();
            [h, w]
        };
        let x = resize(pyramid.p16.clone(), size(&pyramid.p8));
        let x = self
            .up8
            .forward(Tensor::cat(vec![x, pyramid.p8.clone()], 1));
        let x = resize(x, size(&pyramid.p4));
        let x = self
            .up4
            .forward(Tensor::cat(vec![x, pyramid.p4.clone()], 1));
        let half = [image[0].div_ceil(2), image[1].div_ceil(2)];
        let x = match &pyramid.p2 {
            Some(p2) => Tensor::cat(vec![resize(x, size(p2)), p2.clone()], 1),
            None => resize(x, half),
        };
        let x = self.up2.forward(x);
        let logits = resize(tgcnet_kernels::conv2d(&self.head, x.clone()), image);
        match &self.refine {
            Some(r) => logits + r.forward(x, images),
            None => logits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, perturb_params, rand, values};

    fn pyramid(with_p2: bool, dev: &Device) -> Pyramid {
        Pyramid {
            p2: with_p2.then(|| rand([1, 4, 32, 32], dev)),
            p4: rand([1, 8, 16, 16], dev),
            p8: rand([1, 8, 8, 8], dev),
            p16: rand([1, 16, 4, 4], dev),
        }
    }

    #[test]
    fn logits_have_the_image_size() {
        let dev = Device::flex();
        for refine in [0, 4] {
            let cfg = DecoderConfig {
                channels: vec![8, 8, 4],
                refine,
            };
            for p2 in [true, false] {
                let dec = Decoder::new(&cfg, [8, 8, 16], if p2 { 4 } else { 0 }, &dev);
                let out = dec.forward(&pyramid(p2, &dev), rand([1, 3, 64, 64], &dev));
                assert_eq!(out.dims(), [1, 1, 64, 64]);
            }
        }
    }

    #[test]
    fn refinement_starts_as_no_change() {
        let dev = Device::flex();
        let cfg = |refine| DecoderConfig {
            channels: vec![8, 8, 4],
            refine,
        };
        let plain = Decoder::new(&cfg(0), [8, 8, 16], 4, &dev);
        let mut refined = Decoder::new(&cfg(4), [8, 8, 16], 4, &dev);
        assert!(refined.refine.is_some() && plain.refine.is_none());
        refined.up8 = plain.up8.clone();
        refined.up4 = plain.up4.clone();
        refined.up2 = plain.up2.clone();
        refined.head = plain.head.clone();
        let (p, img) = (pyramid(true, &dev), rand([1, 3, 64, 64], &dev));
        let a = values(plain.forward(&p, img.clone()));
        let b = values(refined.forward(&p, img));
        assert_eq!(a, b, "a zero-initialised refinement must add exactly zero");
    }

    #[test]
    fn finite_difference_decoder() {
        let dev = Device::flex().autodiff();
        let cfg = DecoderConfig {
            channels: vec![8, 8, 4],
            refine: 4,
        };
        // Perturbed, so the refinement's zero head does not hide its gradient.
        let dec = perturb_params(Decoder::new(&cfg, [8, 8, 16], 4, &dev), 0.2);
        let p = pyramid(true, &dev);
        let img = rand([1, 3, 64, 64], &dev);
        let w = rand([1, 1, 64, 64], &dev);
        let f = |p16: Tensor<4>| {
            let q = Pyramid { p16, ..p.clone() };
            (dec.forward(&q, img.clone()) * w.clone()).sum()
        };
        check_grad("decoder (P16)", &f, p.p16.clone(), 1e-2);
        let g = |p4: Tensor<4>| {
            let q = Pyramid { p4, ..p.clone() };
            (dec.forward(&q, img.clone()) * w.clone()).sum()
        };
        check_grad("decoder (P4)", &g, p.p4.clone(), 1e-2);
        let h = |images: Tensor<4>| (dec.forward(&p, images) * w.clone()).sum();
        check_grad("decoder (pixels, refinement)", &h, img.clone(), 1e-2);
    }
}
