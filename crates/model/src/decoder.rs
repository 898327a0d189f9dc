//! Decoder of TGC-Net (Lin et al., 2025, arXiv 2512.21135). The paper does not describe it; ours (R) is a
//! U-Net style decoder (Ronneberger et al., 2015): from P16, three stages (→ 1/8, → 1/4, → 1/2), each a
//! bilinear ×2 upsampling, concatenation with the pyramid level of that scale as skip (at 1/2 the CNN stem,
//! when SSE has its CNN branch) and two conv3x3-GroupNorm-ReLU; then a 1×1 conv to one logit and a
//! bilinear upsampling to the input size. (The 1×1 conv runs before the last upsampling: both are linear
//! and the interpolation weights sum to 1, so the order does not change the result, only the cost.)

use burn::module::Module;
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
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            channels: vec![128, 64, 32],
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
        }
    }

    /// pyramid: SSE's levels (after VLCM); image: [S_h, S_w]. Returns logits [B, 1, S_h, S_w].
    pub fn forward(&self, pyramid: &Pyramid, image: [usize; 2]) -> Tensor<4> {
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
        resize(tgcnet_kernels::conv2d(&self.head, x), image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, perturb_params, rand};

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
        let cfg = DecoderConfig {
            channels: vec![8, 8, 4],
        };
        for p2 in [true, false] {
            let dec = Decoder::new(&cfg, [8, 8, 16], if p2 { 4 } else { 0 }, &dev);
            assert_eq!(
                dec.forward(&pyramid(p2, &dev), [64, 64]).dims(),
                [1, 1, 64, 64]
            );
        }
    }

    #[test]
    fn finite_difference_decoder() {
        let dev = Device::flex().autodiff();
        let cfg = DecoderConfig {
            channels: vec![8, 8, 4],
        };
        let dec = perturb_params(Decoder::new(&cfg, [8, 8, 16], 4, &dev), 0.2);
        let p = pyramid(true, &dev);
        let w = rand([1, 1, 64, 64], &dev);
        let f = |p16: Tensor<4>| {
            let q = Pyramid { p16, ..p.clone() };
            (dec.forward(&q, [64, 64]) * w.clone()).sum()
        };
        check_grad("decoder (P16)", &f, p.p16.clone(), 1e-2);
        let g = |p4: Tensor<4>| {
            let q = Pyramid { p4, ..p.clone() };
            (dec.forward(&q, [64, 64]) * w.clone()).sum()
        };
        check_grad("decoder (P4)", &g, p.p4.clone(), 1e-2);
    }
}
