//! Small building blocks shared by the SSE CNN branch and the decoder of TGC-Net (Lin et al., 2025,
//! arXiv 2512.21135): conv3x3-GroupNorm-ReLU and bilinear resizing.
//!
//! (R) GroupNorm rather than BatchNorm: training batches are small (2-16 on one device) and GroupNorm has no
//! running statistics, so a checkpoint is just the parameters and train/eval behave the same.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// Epsilon of TGC-Net's own layer norms (SSE, VLCM): PyTorch's default. Passed to the fused kernel,
/// which cannot read it back from burn's module.
pub const LN_EPS: f64 = 1e-5;

/// Number of GroupNorm groups for `channels`: 8 when it divides (the usual choice), else the largest of
/// 4, 2, 1 that does.
pub fn norm_groups(channels: usize) -> usize {
    [8, 4, 2, 1]
        .into_iter()
        .find(|&g| channels.is_multiple_of(g))
        .unwrap_or(1)
}

/// conv3x3 (padding 1, no bias: the norm's shift replaces it) → GroupNorm → ReLU.
#[derive(Module, Debug)]
pub struct ConvNormAct {
    /// 3×3 convolution.
    pub conv: Conv2d,
    /// Group normalisation.
    pub norm: GroupNorm,
}

impl ConvNormAct {
    /// A block from `c_in` to `c_out` channels with the given stride.
    pub fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            norm: GroupNormConfig::new(norm_groups(c_out), c_out).init(device),
        }
    }

    /// x: [B, C_in, H, W] → [B, C_out, ⌈H/stride⌉, ⌈W/stride⌉]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        tgcnet_kernels::group_norm_relu(&self.norm, tgcnet_kernels::conv2d(&self.conv, x))
    }
}

/// Two [`ConvNormAct`]: the first may change channels and stride, the second keeps them.
#[derive(Module, Debug)]
pub struct DoubleConv {
    /// Changes channels and stride.
    pub first: ConvNormAct,
    /// Keeps them.
    pub second: ConvNormAct,
}

impl DoubleConv {
    /// Two blocks from `c_in` to `c_out` channels, the first with the given stride.
    pub fn new(c_in: usize, c_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            first: ConvNormAct::new(c_in, c_out, stride, device),
            second: ConvNormAct::new(c_out, c_out, 1, device),
        }
    }

    /// x: [B, C_in, H, W] → [B, C_out, ⌈H/stride⌉, ⌈W/stride⌉]
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.second.forward(self.first.forward(x))
    }
}

/// Bilinear resize with half-pixel centres (PyTorch's `align_corners=False`); a no-op at the same size.
/// x: [B, C, h, w] → [B, C, size[0], size[1]] (`tgcnet_kernels::resize_bilinear`: a two-tap kernel on
/// the CPU, two matrix products on the other backends, which lack a bilinear backward)
pub fn resize(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    tgcnet_kernels::resize_bilinear(x, size)
}

/// [B, N, D] tokens of an h×w grid (row-major) → [B, D, h, w] feature map.
pub fn tokens_to_map(x: Tensor<3>, h: usize, w: usize) -> Tensor<4> {
    let [b, _, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, d, h, w])
}

/// [B, D, h, w] feature map → [B, h·w, D] tokens (row-major).
pub fn map_to_tokens(x: Tensor<4>) -> Tensor<3> {
    let [b, d, h, w] = x.dims();
    x.reshape([b, d, h * w]).swap_dims(1, 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn groups_divide_channels() {
        for c in [1, 2, 3, 6, 8, 12, 16, 20, 96, 256] {
            assert_eq!(c % norm_groups(c), 0, "{c}");
        }
        assert_eq!(norm_groups(64), 8);
        assert_eq!(norm_groups(12), 4);
    }

    #[test]
    fn conv_block_shapes_and_token_round_trip() {
        let dev = Device::flex();
        let x = Tensor::<4>::random([2, 3, 9, 8], Distribution::Normal(0.0, 1.0), &dev);
        let y = DoubleConv::new(3, 8, 2, &dev).forward(x.clone());
        assert_eq!(y.dims(), [2, 8, 5, 4]);
        assert_eq!(resize(y, [9, 8]).dims(), [2, 8, 9, 8]);
        let back = tokens_to_map(map_to_tokens(x.clone()), 9, 8);
        let diff = (back - x).abs().max().into_scalar::<f32>();
        assert_eq!(diff, 0.0);
    }
}
