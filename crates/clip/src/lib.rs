//! CLIP (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language Supervision")
//! for TGC-Net (Lin et al., 2025, arXiv 2512.21135): the vision and text towers, their weight loading from
//! HF `transformers` and OpenCLIP checkpoints, the image preprocessing and OpenAI's BPE tokenizer.

pub mod config;
pub mod error;
pub mod image;
pub mod model;
pub mod nn;
pub mod text;
pub mod tokenizer;
pub mod vision;
pub mod weights;

pub use config::{Activation, ClipConfig, ClipTextConfig, ClipVisionConfig};
pub use error::{ClipError, Result};
pub use model::{Clip, Layout, l2_normalize, load_clip};
pub use text::{ClipTextTransformer, TextOutput};
pub use tokenizer::Tokenizer;
pub use vision::{ClipVisionTransformer, VisionOutput};
