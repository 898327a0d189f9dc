//! TGC-Net (Lin, Zhao, Xiong, Zhang, Du, Zhu, "TGC-Net", arXiv 2512.21135, 2025): CLIP's towers with SSE
//! on the image side, DATE on the text side, VLCM between them at 1/16 and 1/8, and a U-Net decoder. The
//! data flow is docs/ARCHITECTURE.md's diagram; the module-level choices are reconstructions (R), see each module.
//!
//! Parameters are named by their module path (`sse.fuse8.gate.weight`, `vision.encoder.layers.0…`), which
//! is also their key in our checkpoints. The CLIP towers come from the CLIP checkpoint named in the config
//! and are frozen by default; everything else (adapters, CNN, fusion, DATE, VLCM, decoder) is trainable
//! and is what [`TgcNet::trainable_params`] saves.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use tgcnet_clip::weights::{KeyStyle, check_unused, collect_params, load_module};
use tgcnet_clip::{ClipConfig, ClipTextTransformer, ClipVisionTransformer};
use tgcnet_io::{HostTensor, TensorMap};

use crate::config::TgcNetConfig;
use crate::date::{Date, encode_passages};
use crate::decoder::Decoder;
use crate::error::{ModelError, Result};
use crate::sse::Sse;
use crate::text::token_ids;
use crate::vlcm::{ConcatFusion, Vlcm};

// The text side moved to `crate::text`; re-exported so that `tgcnet_model::tgcnet::…` paths keep working.
pub use crate::text::{CaptionEncoder, TextBatch, load_knowledge};

/// What the model returns.
#[derive(Debug, Clone)]
pub struct TgcNetOutput {
    /// Mask logits: [B, 1, S, S].
    pub logits: Tensor<4>,
    /// VLCM similarity maps (logits), one per VLCM scale in config order: [B, 1, S/k, S/k]. Empty when
    /// text or VLCM is off.
    pub sim_maps: Vec<Tensor<4>>,
}

/// TGC-Net: CLIP's towers with SSE, DATE, VLCM and the decoder.
#[derive(Module, Debug)]
pub struct TgcNet {
    /// CLIP's vision tower (frozen in the paper preset).
    pub vision: ClipVisionTransformer,
    /// Absent when text guidance is off.
    pub text: Option<ClipTextTransformer>,
    /// SSE: adapters in the ViT, CNN branch, fusion into the pyramid.
    pub sse: Sse,
    /// DATE: text adapters and knowledge fusion; absent when text guidance is off.
    pub date: Option<Date>,
    /// One per VLCM scale (config order), when text and VLCM are on.
    pub vlcm: Vec<Vlcm>,
    /// One per VLCM scale, when text is on and VLCM off.
    pub concat: Vec<ConcatFusion>,
    /// The decoder from the pyramid to the mask logits.
    pub decoder: Decoder,
    /// Pooled passage features of the frozen text tower, [K, Dt]: a constant, not a parameter.
    knowledge_cache: Option<Tensor<2>>,
    /// Passage ids [K, L], kept to re-encode the passages (trainable tower, or new tower weights).
    passage_ids: Option<Tensor<2, Int>>,
    #[module(skip)]
    cfg: TgcNetConfig,
}

/// The stages of [`TgcNet::forward`], in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// CLIP vision tower with SSE (adapters, CNN branch, multi-scale fusion).
    Image,
    /// CLIP text tower with DATE (adapters, knowledge passages); absent with text off.
    Text,
    /// VLCM (or the concatenation that replaces it) at its scales.
    Fusion,
    /// The decoder up to the logits.
    Decoder,
}

impl Stage {
    /// The stage's name, as `bench` reports it.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Image => "image encoder (ViT + SSE)",
            Stage::Text => "text encoder (text tower + DATE)",
            Stage::Fusion => "VLCM / fusion",
            Stage::Decoder => "decoder",
        }
    }
}

impl TgcNet {
    /// The full model: CLIP towers from `cfg.clip.weights` (random without), frozen as configured, and the
    /// knowledge passages encoded. Building it tokenises the knowledge base; see [`TgcNet::new_with`] to
    /// share a [`CaptionEncoder`].
    pub fn new(cfg: &TgcNetConfig, device: &Device) -> Result<Self> {
        let encoder = CaptionEncoder::new(cfg)?;
        Self::new_with(cfg, &encoder, device)
    }

    /// [`TgcNet::new`] with the tokenizer and knowledge base of `encoder` (which must come from `cfg`).
    pub fn new_with(cfg: &TgcNetConfig, encoder: &CaptionEncoder, device: &Device) -> Result<Self> {
        let mut model = Self::init(cfg, device)?;
        if let Some(path) = &cfg.clip.weights {
            let (clip, file_cfg) = tgcnet_clip::load_clip(path, None, device)?;
            check_clip_match(path, &cfg.clip.model, &file_cfg)?;
            model.vision = clip.vision_model;
            if model.text.is_some() {
                model.text = Some(clip.text_model);
            }
        }
        if cfg.clip.freeze_vision {
            model.vision = model.vision.no_grad();
        }
        if cfg.clip.freeze_text {
            model.text = model.text.map(|t| t.no_grad());
        }
        if let (Some(kb), true) = (
            &encoder.knowledge,
            model.date.as_ref().is_some_and(|d| d.knowledge.is_some()),
        ) {
            let ctx = cfg.clip.model.text.context_length;
            let texts: Vec<&str> = kb.passages.iter().map(|p| p.text.as_str()).collect();
            if !texts.is_empty() {
                model.passage_ids = Some(token_ids(&encoder.tokenizer, &texts, ctx, device)?);
            }
            model.refresh_knowledge_cache();
        }
        Ok(model)
    }

    /// The modules with random weights and no knowledge (parameters are lazy: nothing is allocated until
    /// used, so this is cheap for counting parameters).
    pub fn init(cfg: &TgcNetConfig, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let clip = &cfg.clip.model;
        let (v, t) = (&clip.vision, &clip.text);
        let vision = ClipVisionTransformer::new(clip, device);
        let sse = Sse::new(&cfg.sse, v.width, v.layers, device);
        let pyramid = cfg.sse.pyramid_channels();
        let level_channels = |scale: usize| match scale {
            4 => pyramid[0],
            8 => pyramid[1],
            _ => pyramid[2],
        };
        let (text, date, vlcm, concat) = if cfg.text {
            let text = ClipTextTransformer::new(clip, device);
            let date = Date::new(&cfg.date, t.width, t.layers, device);
            let (vlcm, concat) = if cfg.vlcm.enabled {
                let v = cfg
                    .vlcm
                    .scales
                    .iter()
                    .map(|&s| Vlcm::new(&cfg.vlcm, level_channels(s), t.width, device))
                    .collect();
                (v, Vec::new())
            } else {
                let c = cfg
                    .vlcm
                    .scales
                    .iter()
                    .map(|&s| ConcatFusion::new(level_channels(s), t.width, device))
                    .collect();
                (Vec::new(), c)
            };
            (Some(text), Some(date), vlcm, concat)
        } else {
            (None, None, Vec::new(), Vec::new())
        };
        let skip2 = if cfg.sse.cnn {
            cfg.sse.cnn_channels.first().copied().unwrap_or(0)
        } else {
            0
        };
        Ok(Self {
            vision,
            text,
            sse,
            date,
            vlcm,
            concat,
            decoder: Decoder::new(&cfg.decoder, pyramid, skip2, device),
            knowledge_cache: None,
            passage_ids: None,
            cfg: cfg.clone(),
        })
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &TgcNetConfig {
        &self.cfg
    }

    /// Number of knowledge passages the model can attend to (0 without knowledge).
    pub fn num_passages(&self) -> usize {
        self.passage_ids.as_ref().map_or(0, |p| p.dims()[0])
    }

    /// Re-encodes the passages with the current frozen text tower (after its weights changed).
    fn refresh_knowledge_cache(&mut self) {
        self.knowledge_cache = match (&self.text, &self.passage_ids) {
            (Some(text), Some(ids)) if self.cfg.clip.freeze_text => {
                Some(encode_passages(text, ids.clone()).detach())
            }
            _ => None,
        };
    }

    /// images: [B, 3, S, S], CLIP-normalised (S a multiple of 16 and of the patch size); text: the reports.
    /// With text off, `text` is not read.
    pub fn forward(&self, images: Tensor<4>, text: &TextBatch) -> TgcNetOutput {
        self.forward_probed(images, text, &mut |_| {})
    }

    /// [`TgcNet::forward`], calling `probe` after each stage (for `tgcnet bench`'s per-module times).
    pub fn forward_probed(
        &self,
        images: Tensor<4>,
        text: &TextBatch,
        probe: &mut dyn FnMut(Stage),
    ) -> TgcNetOutput {
        let mut pyramid = self.sse.forward(&self.vision, images.clone());
        probe(Stage::Image);
        let mut sim_maps = Vec::new();
        if let (Some(tower), Some(date)) = (&self.text, &self.date) {
            let (passages, matched) = self.batch_passages(&text.knowledge);
            let features = date.forward(tower, text.ids.clone(), passages, &matched);
            probe(Stage::Text);
            for (v, &scale) in self.vlcm.iter().zip(&self.cfg.vlcm.scales) {
                if let Some(level) = pyramid.level(scale) {
                    let (y, s) = v.forward(level.clone(), &features);
                    pyramid.set_level(scale, y);
                    sim_maps.push(s);
                }
            }
            for (c, &scale) in self.concat.iter().zip(&self.cfg.vlcm.scales) {
                if let Some(level) = pyramid.level(scale) {
                    let y = c.forward(level.clone(), features.sentence.clone());
                    pyramid.set_level(scale, y);
                }
            }
        }
        probe(Stage::Fusion);
        let logits = self.decoder.forward(&pyramid, images);
        probe(Stage::Decoder);
        TgcNetOutput { logits, sim_maps }
    }

    /// The passages this batch needs ([M, Dt], the union of its matched sets) and each report's rows in it.
    fn batch_passages(&self, knowledge: &[Vec<usize>]) -> (Option<Tensor<2>>, Vec<Vec<usize>>) {
        let k = self.num_passages();
        let mut union: Vec<usize> = knowledge
            .iter()
            .flatten()
            .copied()
            .filter(|&i| i < k)
            .collect();
        union.sort_unstable();
        union.dedup();
        if union.is_empty() || self.date.as_ref().is_none_or(|d| d.knowledge.is_none()) {
            return (None, Vec::new());
        }
        let row: HashMap<usize, usize> = union.iter().enumerate().map(|(r, &i)| (i, r)).collect();
        let matched = knowledge
            .iter()
            .map(|m| m.iter().filter_map(|i| row.get(i).copied()).collect())
            .collect();
        let (device, all) = match (&self.knowledge_cache, &self.passage_ids, &self.text) {
            (Some(cache), _, _) => (cache.device(), None),
            (None, Some(ids), Some(_)) => (ids.device(), Some(ids)),
            _ => return (None, Vec::new()),
        };
        let index: Vec<i64> = union.iter().map(|&i| i as i64).collect();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [union.len()]), &device);
        let passages = match (&self.knowledge_cache, all, &self.text) {
            (Some(cache), _, _) => cache.clone().select(0, index),
            (None, Some(ids), Some(text)) => encode_passages(text, ids.clone().select(0, index)),
            _ => return (None, Vec::new()),
        };
        (Some(passages), matched)
    }

    /// Checks that a batch fits the model (the forward pass itself panics on mismatched shapes).
    pub fn check_inputs(&self, images: &Tensor<4>, text: &TextBatch) -> Result<()> {
        let [b, c, h, w] = images.dims();
        let p = self.cfg.clip.model.vision.patch_size;
        if c != 3 || h == 0 || h % 16 != 0 || w % 16 != 0 || h % p != 0 || w % p != 0 {
            return Err(ModelError::Input(format!(
                "images must be [B, 3, S, S] with sides multiples of 16 and of the patch size {p}, got {:?}",
                [b, c, h, w]
            )));
        }
        if self.text.is_some() {
            let [bt, l] = text.ids.dims();
            let ctx = self.cfg.clip.model.text.context_length;
            if bt != b || l == 0 || l > ctx {
                return Err(ModelError::Input(format!(
                    "text ids must be [{b}, L ≤ {ctx}], got [{bt}, {l}]"
                )));
            }
            if text.knowledge.len() != b && !text.knowledge.is_empty() {
                return Err(ModelError::Input(format!(
                    "{} knowledge lists for a batch of {b}",
                    text.knowledge.len()
                )));
            }
            let k = self.num_passages();
            if let Some(i) = text.knowledge.iter().flatten().find(|&&i| i >= k) {
                return Err(ModelError::Input(format!(
                    "knowledge passage {i} does not exist (the model has {k})"
                )));
            }
        }
        Ok(())
    }

    /// The trainable parameters by key (what our checkpoints hold).
    pub fn trainable_params(&self) -> BTreeMap<String, HostTensor> {
        let cfg = &self.cfg;
        collect_params(self, "", KeyStyle::Burn, &|key, _, _| {
            cfg.is_trainable_key(key)
        })
    }

    /// What a checkpoint holds ([`TgcNetConfig::is_checkpoint_key`]): the trainable parameters, and the
    /// frozen towers when they are random (no `clip.weights`).
    pub fn checkpoint_params(&self) -> BTreeMap<String, HostTensor> {
        let cfg = &self.cfg;
        collect_params(self, "", KeyStyle::Burn, &|key, _, _| {
            cfg.is_checkpoint_key(key)
        })
    }

    /// Every parameter by key, frozen towers included.
    pub fn all_params(&self) -> BTreeMap<String, HostTensor> {
        collect_params(self, "", KeyStyle::Burn, &|_, _, _| true)
    }

    /// Loads a checkpoint of [`TgcNet::checkpoint_params`]: every such parameter must be in it, every key
    /// of it must be a parameter of this model, shapes must match. Keys of frozen towers are loaded when
    /// present (and the knowledge cache re-encoded).
    pub fn load_params(self, map: &TensorMap) -> Result<Self> {
        let cfg = self.cfg.clone();
        let (mut model, report) = load_module(self, map, "", KeyStyle::Burn, &|k| {
            !cfg.is_checkpoint_key(k)
        })?;
        check_unused(map, &report.used, &|_| false)?;
        if report.used.iter().any(|k| k.starts_with("text.")) {
            model.refresh_knowledge_cache();
        }
        Ok(model)
    }

    /// [`TgcNet::load_params`] from an in-memory map.
    pub fn load_params_map(self, params: BTreeMap<String, HostTensor>) -> Result<Self> {
        self.load_params(&TensorMap {
            source: "<in-memory parameters>".into(),
            tensors: params,
        })
    }

    /// [`TgcNet::load_params_map`] for a start (`train.init`): a checkpoint of a model without the decoder's
    /// refinement stage, when this model has one, leaves that stage at its initialisation, which adds zero
    /// to the logits, so this model starts computing what the checkpoint's model computed. Any other
    /// missing or extra key is an error, as in [`TgcNet::load_params`].
    pub fn init_from(self, mut params: BTreeMap<String, HostTensor>) -> Result<Self> {
        if self.decoder.refine.is_some() && !params.keys().any(|k| k.starts_with(REFINE_KEYS)) {
            for (k, v) in self.checkpoint_params() {
                if k.starts_with(REFINE_KEYS) {
                    params.insert(k, v);
                }
            }
        }
        self.load_params_map(params)
    }

    /// Writes [`TgcNet::checkpoint_params`] as f32 safetensors, with the config as TOML in the metadata
    /// (`tgcnet_config`).
    pub fn save_params(&self, path: &Path) -> Result<()> {
        self.save_params_with(path, false)
    }

    /// [`TgcNet::save_params`], storing float16 with `f16` (half the size; loading converts back to f32).
    pub fn save_params_with(&self, path: &Path, f16: bool) -> Result<()> {
        let meta = HashMap::from([
            ("format".to_string(), "tgcnet-params".to_string()),
            ("tgcnet_config".to_string(), self.cfg.to_toml()?),
        ]);
        TensorMap::write_safetensors(&self.checkpoint_params(), Some(meta), path, f16)?;
        Ok(())
    }

    /// Reads a file written by [`TgcNet::save_params`] into this model.
    pub fn load_params_file(self, path: &Path) -> Result<Self> {
        let map = TensorMap::read_safetensors(path)?;
        self.load_params(&map)
    }
}

/// Key prefix of the decoder's refinement stage (the field names `decoder` and `refine`).
const REFINE_KEYS: &str = "decoder.refine.";

fn check_clip_match(path: &Path, want: &ClipConfig, got: &ClipConfig) -> Result<()> {
    let mismatch = |message: String| {
        Err(ModelError::ClipMismatch {
            path: path.into(),
            message,
        })
    };
    if want.vision != got.vision {
        return mismatch(format!(
            "vision {:?} vs config {:?}",
            got.vision, want.vision
        ));
    }
    if want.text != got.text {
        return mismatch(format!("text {:?} vs config {:?}", got.text, want.text));
    }
    if want.activation != got.activation {
        return mismatch(format!(
            "activation {:?} vs config {:?}",
            got.activation, want.activation
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loss::TgcLoss;
    use crate::testutil::{perturb_params, rand, values};

    fn captions() -> [&'static str; 2] {
        [
            "Bilateral pulmonary infection, two infected areas, middle left lung and lower right lung.",
            "no finding words here",
        ]
    }

    fn setup(cfg: &TgcNetConfig, dev: &Device) -> (TgcNet, TextBatch) {
        let enc = CaptionEncoder::new(cfg).expect("encoder");
        let model = TgcNet::new_with(cfg, &enc, dev).expect("model");
        let text = enc.encode(&captions(), dev).expect("text");
        (model, text)
    }

    /// Padding to the batch's longest caption instead of CLIP's 77 tokens changes no output.
    #[test]
    fn padding_to_the_full_context_changes_nothing() {
        let dev = Device::flex();
        let cfg = TgcNetConfig::tiny();
        let (model, text) = setup(&cfg, &dev);
        let [b, l] = text.ids.dims();
        let full = TextBatch {
            ids: Tensor::cat(
                vec![text.ids.clone(), Tensor::<2, Int>::zeros([b, 77 - l], &dev)],
                1,
            ),
            knowledge: text.knowledge.clone(),
        };
        let images = rand([b, 3, 32, 32], &dev);
        let short = model.forward(images.clone(), &text);
        let long = model.forward(images, &full);
        let diff = (short.logits - long.logits)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(diff < 1e-5, "max difference {diff}");
        for (a, c) in short.sim_maps.into_iter().zip(long.sim_maps) {
            let diff = (a - c).abs().max().into_scalar::<f32>();
            assert!(diff < 1e-5, "similarity map difference {diff}");
        }
    }

    #[test]
    fn forward_shapes_for_every_switch() {
        let dev = Device::flex();
        let images = rand([2, 3, 32, 32], &dev);
        let mut variants = Vec::new();
        variants.push(("full", TgcNetConfig::tiny(), 2));
        let mut c = TgcNetConfig::tiny();
        c.text = false;
        variants.push(("text off", c, 0));
        let mut c = TgcNetConfig::tiny();
        c.vlcm.enabled = false;
        variants.push(("vlcm off", c, 0));
        let mut c = TgcNetConfig::tiny();
        c.sse.cnn = false;
        c.sse.adapters = false;
        c.date.adapters = false;
        c.date.knowledge = false;
        c.vlcm.scales = vec![4, 8, 16];
        variants.push(("no cnn/adapters/knowledge, vlcm at 1/4", c, 3));
        let mut c = TgcNetConfig::tiny();
        c.clip.freeze_text = false;
        variants.push(("trainable text tower", c, 2));
        for (name, cfg, n_sims) in variants {
            let (model, text) = setup(&cfg, &dev);
            model.check_inputs(&images, &text).expect(name);
            let out = model.forward(images.clone(), &text);
            assert_eq!(out.logits.dims(), [2, 1, 32, 32], "{name}");
            assert_eq!(out.sim_maps.len(), n_sims, "{name}");
            for (s, &k) in out.sim_maps.iter().zip(&cfg.vlcm.scales) {
                assert_eq!(s.dims(), [2, 1, 32 / k, 32 / k], "{name}");
            }
            assert!(values(out.logits.abs().sum())[0].is_finite(), "{name}");
        }
    }

    #[test]
    fn knowledge_is_cached_once_for_a_frozen_text_tower() {
        let dev = Device::flex();
        let (model, _) = setup(&TgcNetConfig::tiny(), &dev);
        let k = crate::knowledge::KnowledgeBase::default_base()
            .expect("kb")
            .len();
        assert_eq!(model.num_passages(), k);
        assert_eq!(
            model.knowledge_cache.as_ref().map(|c| c.dims()),
            Some([k, 16])
        );
        let mut cfg = TgcNetConfig::tiny();
        cfg.clip.freeze_text = false;
        let (model, _) = setup(&cfg, &dev);
        assert!(
            model.knowledge_cache.is_none(),
            "trainable tower: re-encoded per batch"
        );
    }

    #[test]
    fn frozen_towers_get_no_gradient_and_adapters_do() {
        use burn::optim::{AdamWConfig, GradientsParams};
        let dev = Device::flex().autodiff();
        let (model, text) = setup(&TgcNetConfig::tiny(), &dev);
        let images = rand([2, 3, 32, 32], &dev);
        let mask = rand([2, 1, 32, 32], &dev).greater_elem(1.0).float();
        let loss_fn = TgcLoss::new(&model.config().loss);
        let backward = |m: &TgcNet| {
            let out = m.forward(images.clone(), &text);
            loss_fn
                .forward(out.logits, &out.sim_maps, mask.clone())
                .total
                .backward()
        };
        let nonzero = |g: Option<Tensor<2>>| g.is_some_and(|g| values(g.abs().sum())[0] > 0.0);
        let vision_adapter_grad = |m: &TgcNet, grads: &burn::tensor::Gradients| {
            let a = m.sse.adapters.as_ref().expect("adapters");
            a.layers[0].up.weight.grad(grads)
        };

        let grads = backward(&model);
        let vit = &model.vision.encoder.layers[0];
        assert!(vit.self_attn.q_proj.weight.grad(&grads).is_none());
        let patch = &model.vision.embeddings.patch_embedding.weight;
        assert!(patch.grad(&grads).is_none());
        let tower = model.text.as_ref().expect("text");
        assert!(
            tower.encoder.layers[1]
                .mlp
                .fc1
                .weight
                .grad(&grads)
                .is_none()
        );
        assert!(
            tower
                .embeddings
                .token_embedding
                .weight
                .grad(&grads)
                .is_none()
        );
        let date = model.date.as_ref().expect("date");
        let text_adapters = date.adapters.as_ref().expect("adapters");
        assert!(
            nonzero(text_adapters.layers[1].up.weight.grad(&grads)),
            "text adapter"
        );
        let gate = &date.knowledge.as_ref().expect("knowledge").gate;
        let gate_grad = gate.grad(&grads);
        assert!(
            gate_grad.is_some_and(|g| values(g.abs().sum())[0] > 0.0),
            "knowledge gate"
        );
        let head = model
            .decoder
            .head
            .weight
            .grad(&grads)
            .map(|g| g.reshape([1, -1]));
        assert!(nonzero(head), "decoder");
        assert!(
            nonzero(model.vlcm[0].film_scale.weight.grad(&grads)),
            "FiLM"
        );
        // The ViT path enters the pyramid through SSE's gate opening α, which starts at 0 (ReZero-style):
        // at step 0 the vision adapters' gradient is exactly zero while α's is not ...
        let alpha = model.sse.fuse8.alpha.as_ref().expect("alpha").grad(&grads);
        assert!(
            alpha.is_some_and(|g| values(g.abs().sum())[0] > 0.0),
            "SSE gate"
        );
        assert!(
            vision_adapter_grad(&model, &grads).is_some(),
            "adapter is in the graph"
        );

        // ... and after one update the vision adapters learn too.
        let mut optim = AdamWConfig::new().init();
        let params = GradientsParams::from_grads(grads, &model);
        let model = optim.step(1e-3, model, params);
        let grads = backward(&model);
        assert!(
            nonzero(vision_adapter_grad(&model, &grads)),
            "vision adapter after one step"
        );
        let vit = &model.vision.encoder.layers[0];
        assert!(vit.self_attn.q_proj.weight.grad(&grads).is_none());
    }

    #[test]
    fn checkpoint_round_trip_restores_every_trainable_parameter() {
        let dev = Device::flex();
        let cfg = TgcNetConfig::tiny();
        let (model, text) = setup(&cfg, &dev);
        let mut model = perturb_params(model, 0.1);
        // The perturbation changed the frozen text tower too.
        model.refresh_knowledge_cache();
        // The tiny preset's towers are frozen and random (no CLIP weights): the checkpoint must carry
        // them, or a fresh process could not rebuild the model.
        let saved = model.checkpoint_params();
        let trainable = model.trainable_params();
        assert!(
            trainable
                .keys()
                .all(|k| !k.starts_with("vision.") && !k.starts_with("text."))
        );
        assert!(trainable.keys().all(|k| saved.contains_key(k)));
        assert_eq!(saved.len(), model.all_params().len());
        assert!(
            saved.contains_key("sse.fuse8.alpha"),
            "{:?}",
            saved.keys().take(5).collect::<Vec<_>>()
        );
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("params.safetensors");
        model.save_params(&path).expect("save");

        // A model built after other random draws: different towers and heads until loaded.
        dev.seed(12345);
        let (fresh, _) = setup(&cfg, &dev);
        let before = fresh.all_params();
        assert_ne!(before, model.all_params());
        let loaded = fresh.load_params_file(&path).expect("load");
        assert_eq!(loaded.all_params(), model.all_params());
        let images = rand([2, 3, 32, 32], &dev);
        let a = model.forward(images.clone(), &text).logits;
        let b = loaded.forward(images, &text).logits;
        assert_eq!(values((a - b).abs().max())[0], 0.0);

        // Every key of a checkpoint must be used, every trainable parameter must be there.
        let mut extra = saved.clone();
        extra.insert(
            "sse.typo.weight".into(),
            HostTensor::new(vec![1], vec![0.0]),
        );
        let e = setup(&cfg, &dev)
            .0
            .load_params_map(extra)
            .expect_err("unused key");
        assert!(e.to_string().contains("sse.typo.weight"), "{e}");
        let mut missing = saved.clone();
        missing.remove("decoder.head.weight");
        let e = setup(&cfg, &dev)
            .0
            .load_params_map(missing)
            .expect_err("missing key");
        assert!(e.to_string().contains("decoder.head.weight"), "{e}");
        let mut wrong = saved;
        wrong.insert(
            "decoder.head.bias".into(),
            HostTensor::new(vec![2], vec![0.0, 0.0]),
        );
        let e = setup(&cfg, &dev)
            .0
            .load_params_map(wrong)
            .expect_err("shape");
        assert!(e.to_string().contains("decoder.head.bias"), "{e}");
    }

    #[test]
    fn a_model_with_refinement_starts_from_a_checkpoint_without_it() {
        let dev = Device::flex();
        let cfg = TgcNetConfig::tiny();
        let (model, text) = setup(&cfg, &dev);
        let mut model = perturb_params(model, 0.1);
        // The perturbation changed the frozen text tower too; loading re-encodes with it.
        model.refresh_knowledge_cache();
        let saved = model.checkpoint_params();
        assert!(!saved.keys().any(|k| k.starts_with(REFINE_KEYS)));
        let mut refined_cfg = cfg.clone();
        refined_cfg.decoder.refine = 4;
        let (fresh, _) = setup(&refined_cfg, &dev);
        let e = setup(&refined_cfg, &dev)
            .0
            .load_params_map(saved.clone())
            .expect_err("a plain load needs every key");
        assert!(e.to_string().contains(REFINE_KEYS), "{e}");
        let refined = fresh.init_from(saved.clone()).expect("init");
        let new_keys: Vec<_> = refined
            .checkpoint_params()
            .into_keys()
            .filter(|k| !saved.contains_key(k))
            .collect();
        assert!(!new_keys.is_empty() && new_keys.iter().all(|k| k.starts_with(REFINE_KEYS)));
        let images = rand([2, 3, 32, 32], &dev);
        let a = model.forward(images.clone(), &text).logits;
        let b = refined.forward(images, &text).logits;
        assert_eq!(values((a - b).abs().max())[0], 0.0);
        // Other keys stay strict: an unused one is still an error.
        let mut extra = saved;
        extra.insert(
            "sse.typo.weight".into(),
            HostTensor::new(vec![1], vec![0.0]),
        );
        let e = setup(&refined_cfg, &dev)
            .0
            .init_from(extra)
            .expect_err("extra");
        assert!(e.to_string().contains("sse.typo.weight"), "{e}");
    }

    #[test]
    fn clip_weights_come_from_the_config() {
        let dev = Device::flex();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clip/tests/fixtures/clip/hf");
        let mut cfg = TgcNetConfig::tiny();
        cfg.clip.weights = Some(fixture.clone());
        let (model, text) = setup(&cfg, &dev);
        let file = TensorMap::read_safetensors(&fixture.join("model.safetensors")).expect("read");
        let got = collect_params(
            &model.vision,
            "vision_model",
            KeyStyle::Torch,
            &|_, _, _| true,
        );
        assert!(!got.is_empty());
        for (k, t) in &got {
            assert_eq!(&file.tensors[k], t, "{k}");
        }
        let out = model.forward(rand([2, 3, 32, 32], &dev), &text);
        assert_eq!(out.logits.dims(), [2, 1, 32, 32]);

        let mut bad = TgcNetConfig::tiny();
        bad.clip.weights = Some(fixture);
        bad.clip.model.vision.layers = 4;
        bad.sse.taps = vec![1, 2, 4];
        let e = TgcNet::new(&bad, &dev).expect_err("mismatch");
        assert!(e.to_string().contains("does not match"), "{e}");
    }
}
