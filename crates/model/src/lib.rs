//! TGC-Net (Lin, Zhao, Xiong, Zhang, Du, Zhu, "TGC-Net", arXiv 2512.21135, 2025): text-guided medical
//! image segmentation on CLIP. SSE (CLIP ViT + adapters + CNN branch, gated multi-scale fusion), DATE (CLIP
//! text tower + adapters + knowledge injection), VLCM (joint-space similarity, bidirectional
//! cross-attention, FiLM), a U-Net decoder and the Dice + BCE + alignment loss. The paper's text and code
//! are not public: every layer-level choice is our reconstruction (marked (R) in each module) and a switch
//! of [`TgcNetConfig`].

pub mod adapter;
pub mod attention;
pub mod blocks;
pub mod config;
pub mod date;
pub mod decoder;
pub mod error;
pub mod info;
pub mod knowledge;
pub mod knowledge_gen;
pub mod loss;
pub mod sse;
pub mod text;
pub mod tgcnet;
pub mod tta;
pub mod vlcm;

#[cfg(test)]
mod testutil;

pub use adapter::{Adapter, AdapterConfig, AdapterStack};
pub use config::{ClipSection, PRESETS, TgcNetConfig};
pub use date::{Date, DateConfig, KnowledgeFusion, PassageModality, TextFeatures};
pub use decoder::{Decoder, DecoderConfig};
pub use error::{ModelError, Result};
pub use info::{ModelInfo, ModuleInfo, model_info};
pub use knowledge::{KnowledgeBase, Passage};
pub use loss::{LossConfig, LossOutput, LossValues, TgcLoss, dice_per_image};
pub use sse::{CnnBranch, Pyramid, Sse, SseConfig};
pub use text::{CaptionEncoder, TextBatch, load_knowledge};
pub use tgcnet::{Stage, TgcNet, TgcNetOutput};
pub use tta::TtaConfig;
pub use vlcm::{ConcatFusion, Vlcm, VlcmConfig};

#[cfg(test)]
mod tests {
    /// The data crate keeps its own copy of CLIP's input statistics (so that it needs no CLIP code);
    /// it must be CLIP's.
    #[test]
    fn data_normalises_with_clips_statistics() {
        assert_eq!(
            tgcnet_data::transform::CLIP_MEAN,
            tgcnet_clip::image::CLIP_MEAN
        );
        assert_eq!(
            tgcnet_data::transform::CLIP_STD,
            tgcnet_clip::image::CLIP_STD
        );
    }
}
