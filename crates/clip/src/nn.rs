//! The pre-LN transformer shared by both CLIP towers (Radford et al., 2021, "Learning Transferable Visual
//! Models From Natural Language Supervision"). Field names follow HF `CLIPEncoderLayer`, so a module path is
//! the HF key (LayerNorm `gamma`/`beta` stand for PyTorch's `weight`/`bias`).

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::Device;
use burn::tensor::Tensor;
use burn::tensor::activation::sigmoid;
use burn::tensor::ops::AttentionModuleOptions;
use tgcnet_kernels::{attention, gelu, layer_norm, linear};

use crate::config::Activation;

/// Called after every transformer block with the 1-based block index and the block's output; lets a caller
/// (SSE, DATE) put adapters inside a frozen tower without the tower knowing about them.
pub type LayerHook<'a> = &'a dyn Fn(usize, Tensor<3>) -> Tensor<3>;

/// Multi-head self-attention (HF `CLIPAttention`).
#[derive(Module, Debug)]
pub struct ClipAttention {
    /// Query projection.
    pub q_proj: Linear,
    /// Key projection.
    pub k_proj: Linear,
    /// Value projection.
    pub v_proj: Linear,
    /// Output projection.
    pub out_proj: Linear,
    /// Number of heads; the width is split evenly among them.
    pub num_heads: usize,
}

impl ClipAttention {
    /// Randomly initialised attention of `width` channels in `heads` heads.
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        let lin = || LinearConfig::new(width, width).init(device);
        Self {
            q_proj: lin(),
            k_proj: lin(),
            v_proj: lin(),
            out_proj: lin(),
            num_heads: heads,
        }
    }

    /// x: [B, L, D] → [B, L, D]
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let h = self.num_heads;
        let split = |t: Tensor<3>| t.reshape([b, l, h, d / h]).swap_dims(1, 2);
        let q = split(linear(&self.q_proj, x.clone()));
        let k = split(linear(&self.k_proj, x.clone()));
        let v = split(linear(&self.v_proj, x));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: causal,
        };
        let o = attention(q, k, v, None, options);
        linear(&self.out_proj, o.swap_dims(1, 2).reshape([b, l, d]))
    }
}

/// The block's MLP: `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct ClipMlp {
    /// Expansion to the hidden width.
    pub fc1: Linear,
    /// Projection back to the token width.
    pub fc2: Linear,
    /// QuickGELU instead of exact GELU ([`Activation`]).
    pub quick_gelu: bool,
}

impl ClipMlp {
    /// x: [B, L, D] → [B, L, D]
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = linear(&self.fc1, x);
        let h = if self.quick_gelu {
            // QuickGELU of the OpenAI checkpoints: x·σ(1.702x).
            h.clone() * sigmoid(h * 1.702)
        } else {
            gelu(h)
        };
        linear(&self.fc2, h)
    }
}

/// One pre-LN transformer block: `x + attn(ln1(x))`, then `x + mlp(ln2(x))`.
#[derive(Module, Debug)]
pub struct ClipEncoderLayer {
    /// Self-attention.
    pub self_attn: ClipAttention,
    /// Layer norm before the attention.
    pub layer_norm1: LayerNorm,
    /// The MLP.
    pub mlp: ClipMlp,
    /// Layer norm before the MLP.
    pub layer_norm2: LayerNorm,
    /// The layer norms' epsilon (burn keeps the module's own private; the fused kernel needs it).
    pub ln_eps: f64,
}

impl ClipEncoderLayer {
    /// x: [B, L, D] → [B, L, D]
    pub fn forward(&self, x: Tensor<3>, causal: bool) -> Tensor<3> {
        let ln1 = layer_norm(&self.layer_norm1, x.clone(), self.ln_eps);
        let x = x + self.self_attn.forward(ln1, causal);
        let ln2 = layer_norm(&self.layer_norm2, x.clone(), self.ln_eps);
        x + self.mlp.forward(ln2)
    }
}

/// A stack of transformer blocks.
#[derive(Module, Debug)]
pub struct ClipEncoder {
    /// The blocks, in order.
    pub layers: Vec<ClipEncoderLayer>,
}

/// The encoder's result: the last block's output and the outputs of the requested blocks.
pub struct EncoderOutput {
    /// The last block's output.
    pub last: Tensor<3>,
    /// One per requested tap, in the order asked.
    pub taps: Vec<Tensor<3>>,
}

impl ClipEncoder {
    /// Randomly initialised blocks of the given sizes.
    pub fn new(
        width: usize,
        layers: usize,
        heads: usize,
        mlp_dim: usize,
        act: Activation,
        eps: f64,
        device: &Device,
    ) -> Self {
        let ln = || LayerNormConfig::new(width).with_epsilon(eps).init(device);
        let layers = (0..layers)
            .map(|_| ClipEncoderLayer {
                self_attn: ClipAttention::new(width, heads, device),
                layer_norm1: ln(),
                mlp: ClipMlp {
                    fc1: LinearConfig::new(width, mlp_dim).init(device),
                    fc2: LinearConfig::new(mlp_dim, width).init(device),
                    quick_gelu: act == Activation::QuickGelu,
                },
                layer_norm2: ln(),
                ln_eps: eps,
            })
            .collect();
        Self { layers }
    }

    /// x: [B, L, D]. `taps` are 1-based block indices (HF's `hidden_states[i]`, after any hook);
    /// the last block's output is always returned.
    pub fn forward(
        &self,
        mut x: Tensor<3>,
        causal: bool,
        taps: &[usize],
        hook: Option<LayerHook<'_>>,
    ) -> EncoderOutput {
        let mut found: Vec<Option<Tensor<3>>> = vec![None; taps.len()];
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, causal);
            if let Some(hook) = hook {
                x = hook(i + 1, x);
            }
            for (slot, &t) in found.iter_mut().zip(taps) {
                if t == i + 1 {
                    *slot = Some(x.clone());
                }
            }
            // Blocks after the deepest tap are not needed when the caller only wants taps.
        }
        let taps = found
            .into_iter()
            .map(|t| t.unwrap_or_else(|| x.clone()))
            .collect();
        EncoderOutput { last: x, taps }
    }
}
