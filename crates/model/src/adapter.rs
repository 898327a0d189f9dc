//! Bottleneck adapters for the frozen CLIP towers (SSE on the vision side, DATE on the text side) of TGC-Net
//! (Lin et al., 2025, arXiv 2512.21135). The paper adapts CLIP "with few trainable parameters" but does not
//! publish the adapter form; this one is our reconstruction (R), after Houlsby et al. (2019) and AdaptFormer
//! (Chen et al., 2022): `x + scale · up(GELU(down(x)))` after every transformer block, `up` zero-initialised
//! so that at the start of training the tower computes exactly what the pretrained CLIP computes.
//!
//! The adapters are separate modules applied through the tower's [`tgcnet_clip::nn::LayerHook`], so freezing
//! the tower (`no_grad`) leaves them trainable.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use tgcnet_kernels::{gelu, linear};

/// Size of one adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterConfig {
    /// Bottleneck width r (D → r → D).
    pub width: usize,
    /// Multiplier of the adapter's output (R: 1.0; AdaptFormer uses 0.1 with a larger learning rate).
    pub scale: f64,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        Self {
            width: 64,
            scale: 1.0,
        }
    }
}

/// `x + scale · up(GELU(down(x)))`.
#[derive(Module, Debug)]
pub struct Adapter {
    /// Down-projection to the bottleneck (D → r).
    pub down: Linear,
    /// Zero-initialised: the adapter starts as the identity, and `up` still gets a gradient at step 0.
    pub up: Linear,
    /// Multiplier of the adapter's output.
    pub scale: f64,
}

impl Adapter {
    /// An adapter of width `cfg.width` over `dim`-wide tokens, starting as the identity.
    pub fn new(dim: usize, cfg: &AdapterConfig, device: &Device) -> Self {
        Self {
            down: LinearConfig::new(dim, cfg.width).init(device),
            up: LinearConfig::new(cfg.width, dim)
                .with_initializer(Initializer::Zeros)
                .init(device),
            scale: cfg.scale,
        }
    }

    /// x: [B, L, D] → [B, L, D]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let delta = linear(&self.up, gelu(linear(&self.down, x.clone())));
        x + delta * self.scale
    }
}

/// One adapter per transformer block, to be called from the tower's layer hook.
#[derive(Module, Debug)]
pub struct AdapterStack {
    /// One adapter per block, in block order.
    pub layers: Vec<Adapter>,
}

impl AdapterStack {
    /// `blocks` adapters over `dim`-wide tokens.
    pub fn new(dim: usize, blocks: usize, cfg: &AdapterConfig, device: &Device) -> Self {
        Self {
            layers: (0..blocks)
                .map(|_| Adapter::new(dim, cfg, device))
                .collect(),
        }
    }

    /// The hook body: `layer` is the 1-based block index the tower passes; blocks without an adapter pass
    /// through. x: [B, L, D] → [B, L, D]
    pub fn apply(&self, layer: usize, x: Tensor<3>) -> Tensor<3> {
        match layer.checked_sub(1).and_then(|i| self.layers.get(i)) {
            Some(a) => a.forward(x),
            None => x,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;

    #[test]
    fn starts_as_identity_and_up_gets_a_gradient() {
        let dev = Device::flex().autodiff();
        let cfg = AdapterConfig {
            width: 4,
            scale: 0.5,
        };
        let stack = AdapterStack::new(8, 2, &cfg, &dev);
        let x = Tensor::<3>::random([2, 3, 8], Distribution::Normal(0.0, 1.0), &dev);
        let y = stack.apply(1, x.clone());
        let same = (y.clone() - x.clone()).abs().max().into_scalar::<f32>();
        assert_eq!(same, 0.0);
        assert_eq!(stack.apply(3, x.clone()).dims(), [2, 3, 8]);
        let grads = (y * x).sum().backward();
        let g_up = stack.layers[0].up.weight.grad(&grads).expect("up grad");
        assert!(g_up.abs().sum().into_scalar::<f32>() > 0.0);
    }
}
