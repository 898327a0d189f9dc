//! Training and evaluation of TGC-Net (Lin et al., 2025, arXiv 2512.21135).
//!
//! A run directory ([`rundir`]) holds `config.toml` (written first), `metrics.jsonl` / `metrics.csv`
//! (one row per epoch), `steps.jsonl`, `curves.svg`, `last.safetensors` (trainable parameters, optimizer
//! state, progress: what `--resume` reads) and `best.safetensors` (the parameters of the best validation
//! Dice). Checkpoints are written atomically; metrics rows are appended and synced.

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod evaluate;
pub mod optim;
pub mod plot;
pub mod rundir;
pub mod trainer;

pub use config::{RunConfig, TrainConfig};
pub use error::{Result, TrainError};
pub use evaluate::{EvalOptions, EvalReport, evaluate};
pub use trainer::{TrainOutcome, train};
