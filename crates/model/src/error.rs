//! Errors of the TGC-Net model crate. Every variant names the file, key or setting it is about.

use std::path::PathBuf;

/// What can go wrong while configuring, building, loading or training a [`crate::TgcNet`].
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or directory operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Shown in the message, and deliberately not the error's `source()`: a report printing the
        /// whole chain would repeat the OS message.
        error: std::io::Error,
    },
    /// A config file that is not valid TOML or does not fit [`crate::TgcNetConfig`].
    #[error("{path}: invalid TgcNet config: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A config whose values do not describe a buildable model.
    #[error("invalid TgcNet config: {0}")]
    Config(String),
    /// A preset name that is not `paper`, `small` or `tiny`.
    #[error("unknown preset `{0}` (known: paper, small, tiny)")]
    UnknownPreset(String),
    /// CLIP weights, config or tokenizer could not be read.
    #[error(transparent)]
    Clip(#[from] tgcnet_clip::ClipError),
    /// The knowledge base could not be read or is invalid.
    #[error("knowledge base: {0}")]
    Knowledge(String),
    /// The CLIP checkpoint holds towers of another size than the config describes.
    #[error(
        "{path}: the CLIP checkpoint does not match the config's [clip.model]: {message}; set [clip.model] to the checkpoint's sizes"
    )]
    ClipMismatch {
        /// The CLIP checkpoint.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Inputs whose shapes do not fit the model.
    #[error("bad model input: {0}")]
    Input(String),
    /// The loss (or one of its terms) is NaN or infinite: training cannot continue.
    #[error("non-finite loss: total {total}, dice {dice}, bce {bce}, aux {aux:?}")]
    NonFiniteLoss {
        /// The total loss.
        total: f64,
        /// Its Dice term.
        dice: f64,
        /// Its BCE term.
        bce: f64,
        /// Its similarity-map terms.
        aux: Vec<f64>,
    },
    /// A tensor could not be read back from the device.
    #[error("reading a tensor from the device: {0}")]
    Read(String),
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            error: source,
        }
    }
}

impl From<tgcnet_io::IoError> for ModelError {
    fn from(e: tgcnet_io::IoError) -> Self {
        // Through the CLIP error, as when tensor files lived in `tgcnet-clip`.
        ModelError::Clip(e.into())
    }
}
