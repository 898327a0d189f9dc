//! CLIP's causal text transformer (Radford et al., 2021).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Int, Tensor};

use crate::config::ClipConfig;
use crate::nn::{ClipEncoder, LayerHook};

/// Token and position embeddings of the text tower (HF `CLIPTextEmbeddings`).
#[derive(Module, Debug)]
pub struct ClipTextEmbeddings {
    /// One row per BPE token.
    pub token_embedding: Embedding,
    /// One row per position, up to the context length.
    pub position_embedding: Embedding,
}

/// HF `CLIPTextTransformer`: embeddings, causal transformer, final layer norm.
#[derive(Module, Debug)]
pub struct ClipTextTransformer {
    /// Token and position embeddings.
    pub embeddings: ClipTextEmbeddings,
    /// The transformer blocks (causal attention).
    pub encoder: ClipEncoder,
    /// Layer norm of the last block's output.
    pub final_layer_norm: LayerNorm,
    /// `final_layer_norm`'s epsilon (burn keeps the module's own private; the fused kernel needs it).
    pub ln_eps: f64,
}

/// What the text tower returns.
pub struct TextOutput {
    /// Per-token features after the final LayerNorm: [B, L, D].
    pub tokens: Tensor<3>,
    /// Feature at the end token (argmax of the ids): [B, D].
    pub pooled: Tensor<2>,
    /// Index of the end token per sequence: [B].
    pub eot: Tensor<1, Int>,
}

impl ClipTextTransformer {
    /// A randomly initialised text tower of `cfg.text`'s sizes.
    pub fn new(cfg: &ClipConfig, device: &Device) -> Self {
        let t = &cfg.text;
        Self {
            embeddings: ClipTextEmbeddings {
                token_embedding: EmbeddingConfig::new(t.vocab_size, t.width).init(device),
                position_embedding: EmbeddingConfig::new(t.context_length, t.width).init(device),
            },
            encoder: ClipEncoder::new(
                t.width,
                t.layers,
                t.heads,
                t.mlp_dim,
                cfg.activation,
                cfg.layer_norm_eps,
                device,
            ),
            final_layer_norm: LayerNormConfig::new(t.width)
                .with_epsilon(cfg.layer_norm_eps)
                .init(device),
            ln_eps: cfg.layer_norm_eps,
        }
    }

    /// ids: [B, L] (L ≤ context length, padded with 0 after the end token). The end token (49407) is the
    /// largest id of CLIP's vocabulary, so its position is the argmax, as in OpenAI's and HF's pooling.
    pub fn forward(&self, ids: Tensor<2, Int>, hook: Option<LayerHook<'_>>) -> TextOutput {
        let [b, l] = ids.dims();
        let device = ids.device();
        let pos = Tensor::<1, Int>::arange(0..l as i64, &device).reshape([1, l]);
        let x = self.embeddings.token_embedding.forward(ids.clone())
            + self.embeddings.position_embedding.forward(pos);
        let out = self.encoder.forward(x, true, &[], hook);
        let tokens = tgcnet_kernels::layer_norm(&self.final_layer_norm, out.last, self.ln_eps);
        let d = tokens.dims()[2];
        let eot = ids.argmax(1); // [B, 1]
        let index = eot.clone().reshape([b, 1, 1]).expand([b, 1, d]);
        let pooled = tokens.clone().gather(1, index).reshape([b, d]);
        TextOutput {
            tokens,
            pooled,
            eot: eot.reshape([b]),
        }
    }
}
