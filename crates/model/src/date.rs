//! DATE, the Domain-Augmented Text Encoder of TGC-Net (Lin et al., 2025, arXiv 2512.21135): the paper
//! "injects large-language-model-derived medical knowledge into the text encoder". The mechanism is our
//! reconstruction (R), each part behind a switch of [`DateConfig`]:
//!
//! - bottleneck adapters after every block of CLIP's text transformer ([`crate::adapter`]);
//! - knowledge passages (one per clinical term, [`crate::knowledge`]) encoded by the text tower without
//!   adapters, pooled at their end token before the text projection ([K, Dt]). With a frozen text tower they
//!   are encoded once when the model is built and kept as a constant; with a trainable tower (the `small`
//!   preset) the passages a batch needs are re-encoded in every forward, with gradients, since a cache
//!   would go stale after the first update;
//! - the report's tokens cross-attend to the passages matched to that report (the others are masked out),
//!   and the result is added through a per-channel gate γ initialised to 0: `T' = T + γ ⊙ has ⊙ CA(T, K)`,
//!   where `has` is 0 for a report without matched passages, whose tokens stay exactly as CLIP made them;
//! - the sentence embedding is the augmented token at the end-token position (CLIP's pooling).

use std::path::PathBuf;

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use tgcnet_clip::ClipTextTransformer;

use crate::adapter::{AdapterConfig, AdapterStack};
use crate::attention::CrossAttention;

/// Switches and sizes of DATE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DateConfig {
    /// Bottleneck adapters after every text block.
    pub adapters: bool,
    /// Adapter bottleneck width.
    pub adapter_width: usize,
    /// Adapter output multiplier.
    pub adapter_scale: f64,
    /// Knowledge injection (cross-attention to matched passages).
    pub knowledge: bool,
    /// Attention heads of the knowledge cross-attention (must divide the text width).
    pub heads: usize,
    /// Knowledge base TOML; absent: the built-in base (`knowledge/default.toml`).
    pub knowledge_file: Option<PathBuf>,
    /// Which descriptions a passage holds: `both` ("X-ray: … CT: …"), or only the imaging modality the
    /// model segments (`xray`, `ct`): half the tokens, and nothing about the other modality.
    pub modality: PassageModality,
}

/// The descriptions a knowledge passage is made of ([`DateConfig::modality`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PassageModality {
    /// "X-ray: … CT: …".
    #[default]
    Both,
    /// Only the X-ray description.
    Xray,
    /// Only the CT description.
    Ct,
}

impl Default for DateConfig {
    fn default() -> Self {
        Self {
            adapters: true,
            adapter_width: 64,
            adapter_scale: 1.0,
            knowledge: true,
            heads: 8,
            knowledge_file: None,
            modality: PassageModality::Both,
        }
    }
}

impl DateConfig {
    /// The text adapters' sizes.
    pub fn adapter(&self) -> AdapterConfig {
        AdapterConfig {
            width: self.adapter_width,
            scale: self.adapter_scale,
        }
    }

    /// Checks that the heads divide `text_width` and the adapters have a width.
    pub fn validate(&self, text_width: usize) -> std::result::Result<(), String> {
        if self.knowledge && (self.heads == 0 || !text_width.is_multiple_of(self.heads)) {
            return Err(format!(
                "date.heads = {} must divide the text width {text_width}",
                self.heads
            ));
        }
        if self.adapters && self.adapter_width == 0 {
            return Err("date.adapter_width must be positive".into());
        }
        Ok(())
    }
}

/// Text features handed to VLCM and the decoder.
#[derive(Debug, Clone)]
pub struct TextFeatures {
    /// Knowledge-augmented tokens: [B, L, Dt].
    pub tokens: Tensor<3>,
    /// Augmented token at the end-token position: [B, Dt].
    pub sentence: Tensor<2>,
    /// End-token position per report: [B].
    pub eot: Tensor<1, Int>,
    /// True for the padding after the end token: [B, L].
    pub padding: Tensor<2, Bool>,
}

/// Cross-attention from report tokens to knowledge passages with a zero-initialised gate.
#[derive(Module, Debug)]
pub struct KnowledgeFusion {
    /// Report tokens (queries) attend to the passages (keys and values).
    pub attn: CrossAttention,
    /// Per-channel gate γ, zero-initialised.
    pub gate: Param<Tensor<1>>,
}

impl KnowledgeFusion {
    /// A fusion of `width`-wide text in `heads` heads, its gate closed.
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Self {
            attn: CrossAttention::new(width, width, width, heads, device),
            gate: Initializer::Zeros.init([width], device),
        }
    }

    /// tokens: [B, L, Dt]; passages: [M, Dt]; matched[b]: rows of `passages` report b may attend to
    /// (out-of-range rows are ignored). Returns [B, L, Dt]; reports with no matched row come back unchanged.
    pub fn forward(
        &self,
        tokens: Tensor<3>,
        passages: Tensor<2>,
        matched: &[Vec<usize>],
    ) -> Tensor<3> {
        let [b, _, d] = tokens.dims();
        let m = passages.dims()[0];
        if m == 0 || b == 0 {
            return tokens;
        }
        let device = tokens.device();
        let mut ignore = vec![true; b * m];
        let mut has = vec![0.0f32; b];
        for (row, idx) in matched.iter().take(b).enumerate() {
            for &j in idx.iter().filter(|&&j| j < m) {
                ignore[row * m + j] = false;
                has[row] = 1.0;
            }
        }
        if has.iter().all(|&h| h == 0.0) {
            return tokens;
        }
        let ignore = Tensor::<2, Bool>::from_data(TensorData::new(ignore, [b, m]), &device);
        let has = Tensor::<3>::from_data(TensorData::new(has, [b, 1, 1]), &device);
        let context = passages.unsqueeze::<3>().expand([b, m, d]);
        let delta = self.attn.forward(tokens.clone(), context, Some(ignore));
        tokens + delta * has * self.gate.val().reshape([1, 1, d])
    }
}

/// DATE: text adapters and knowledge fusion.
#[derive(Module, Debug)]
pub struct Date {
    /// Bottleneck adapters inside the text tower (`date.adapters`).
    pub adapters: Option<AdapterStack>,
    /// The knowledge fusion (`date.knowledge`).
    pub knowledge: Option<KnowledgeFusion>,
}

impl Date {
    /// DATE for a text tower of `text_width` and `text_layers` blocks.
    pub fn new(cfg: &DateConfig, text_width: usize, text_layers: usize, device: &Device) -> Self {
        Self {
            adapters: cfg
                .adapters
                .then(|| AdapterStack::new(text_width, text_layers, &cfg.adapter(), device)),
            knowledge: cfg
                .knowledge
                .then(|| KnowledgeFusion::new(text_width, cfg.heads, device)),
        }
    }

    /// Runs the text tower with the adapters in its hook and injects knowledge.
    /// ids: [B, L] CLIP BPE ids, 0-padded after the end token; passages: [M, Dt] (pooled, pre-projection);
    /// matched[b]: rows of `passages` for report b.
    pub fn forward(
        &self,
        text: &ClipTextTransformer,
        ids: Tensor<2, Int>,
        passages: Option<Tensor<2>>,
        matched: &[Vec<usize>],
    ) -> TextFeatures {
        let [b, l] = ids.dims();
        let hook = |layer: usize, x: Tensor<3>| match &self.adapters {
            Some(a) => a.apply(layer, x),
            None => x,
        };
        let out = text.forward(ids.clone(), Some(&hook));
        let tokens = match (&self.knowledge, passages) {
            (Some(k), Some(p)) => k.forward(out.tokens, p, matched),
            _ => out.tokens,
        };
        let d = tokens.dims()[2];
        let eot = out.eot;
        let index = eot.clone().reshape([b, 1, 1]).expand([b, 1, d]);
        let sentence = tokens.clone().gather(1, index).reshape([b, d]);
        let device = ids.device();
        // Compared as floats: `argmax` and `arange` may hand back different integer widths.
        let positions = Tensor::<1, Int>::arange(0..l as i64, &device)
            .float()
            .reshape([1, l])
            .expand([b, l]);
        let padding = positions.greater(eot.clone().float().reshape([b, 1]).expand([b, l]));
        TextFeatures {
            tokens,
            sentence,
            eot,
            padding,
        }
    }
}

/// Pooled, pre-projection features of knowledge passages: the text tower without adapters, in chunks so
/// that memory stays bounded. ids: [K, L] → [K, Dt].
pub fn encode_passages(text: &ClipTextTransformer, ids: Tensor<2, Int>) -> Tensor<2> {
    const CHUNK: usize = 16;
    let [k, l] = ids.dims();
    let parts: Vec<Tensor<2>> = (0..k)
        .step_by(CHUNK)
        .map(|s| {
            let n = CHUNK.min(k - s);
            text.forward(ids.clone().narrow(0, s, n).reshape([n, l]), None)
                .pooled
        })
        .collect();
    Tensor::cat(parts, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{check_grad, perturb_params, rand, values};

    #[test]
    fn report_without_knowledge_is_unchanged_and_gate_starts_closed() {
        let dev = Device::flex().autodiff();
        let fresh = KnowledgeFusion::new(16, 2, &dev);
        let tokens = rand([2, 5, 16], &dev);
        let passages = rand([3, 16], &dev);
        let matched = vec![vec![0, 2], vec![]];
        let y = fresh.forward(tokens.clone(), passages.clone(), &matched);
        assert_eq!(values((y.clone() - tokens.clone()).abs().max())[0], 0.0);
        let grads = (y.clone() * y).sum().backward();
        let g = fresh.gate.grad(&grads).expect("gate grad");
        assert!(
            values(g.abs().sum())[0] > 0.0,
            "gate gets a gradient at init"
        );

        let open = perturb_params(KnowledgeFusion::new(16, 2, &dev), 0.5);
        let y = open.forward(tokens.clone(), passages, &matched);
        let d0 = values((y.clone() - tokens.clone()).narrow(0, 0, 1).abs().max())[0];
        let d1 = values((y - tokens).narrow(0, 1, 1).abs().max())[0];
        assert!(d0 > 1e-3, "matched report changes");
        assert_eq!(d1, 0.0, "report without matched passage is unchanged");
    }

    #[test]
    fn finite_difference_knowledge_fusion() {
        let dev = Device::flex().autodiff();
        let k = perturb_params(KnowledgeFusion::new(16, 2, &dev), 0.5);
        let tokens = rand([2, 5, 16], &dev);
        let passages = rand([3, 16], &dev);
        let matched = vec![vec![0, 2], vec![1]];
        let w = rand([2, 5, 16], &dev);
        let f = |t: Tensor<3>| (k.forward(t, passages.clone(), &matched) * w.clone()).sum();
        check_grad("DATE fusion (tokens)", &f, tokens.clone(), 1e-2);
        let g = |p: Tensor<2>| (k.forward(tokens.clone(), p, &matched) * w.clone()).sum();
        check_grad("DATE fusion (passages)", &g, passages, 1e-2);
    }

    #[test]
    fn text_features_shapes_and_padding() {
        let dev = Device::flex();
        let clip = crate::config::TgcNetConfig::tiny().clip.model;
        let tower = ClipTextTransformer::new(&clip, &dev);
        let date = Date::new(
            &DateConfig {
                heads: 2,
                adapter_width: 4,
                ..Default::default()
            },
            16,
            2,
            &dev,
        );
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(vec![49406i64, 320, 49407, 0, 49406, 49407, 0, 0], [2, 4]),
            &dev,
        );
        let passages = encode_passages(&tower, ids.clone());
        assert_eq!(passages.dims(), [2, 16]);
        let out = date.forward(&tower, ids, Some(passages), &[vec![0], vec![]]);
        assert_eq!(out.tokens.dims(), [2, 4, 16]);
        assert_eq!(out.sentence.dims(), [2, 16]);
        let pad = out
            .padding
            .int()
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("ints");
        assert_eq!(pad, vec![0, 0, 0, 1, 0, 0, 1, 1]);
    }
}
