//! The error type of training, evaluation, checkpoints and run directories.

use std::path::PathBuf;

/// Everything training, evaluation, checkpoints and the run directory can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The model could not be built, loaded or run.
    #[error(transparent)]
    Model(#[from] tgcnet_model::error::ModelError),
    /// A dataset, picture or caption could not be read.
    #[error(transparent)]
    Data(#[from] tgcnet_data::DataError),
    /// CLIP weights or a tensor file could not be read or written.
    #[error(transparent)]
    Clip(#[from] tgcnet_clip::ClipError),
    /// A file or directory operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Shown in the message, and deliberately not the error's `source()`: a report printing the
        /// whole chain would repeat the OS message.
        error: std::io::Error,
    },
    /// A configuration file that cannot be read or is inconsistent.
    #[error("{path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A run directory or dataset that cannot be trained from as asked.
    #[error("{path}: {message}")]
    RunDir {
        /// The run directory or dataset root.
        path: PathBuf,
        /// Why it cannot be used.
        message: String,
    },
    /// A file format we own that could not be written.
    #[error("writing {what}: {message}")]
    Serialize {
        /// What was being written ("metrics.csv", "the run config", …).
        what: &'static str,
        /// The serialiser's error.
        message: String,
    },
    /// A file that is not a checkpoint this version can read.
    #[error("{path}: not a tgcnet checkpoint: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is missing or wrong in it.
        message: String,
    },
    /// The loss became NaN or infinite: training stops rather than corrupt the weights.
    #[error(
        "non-finite loss at epoch {epoch}, step {step} (total {total}, dice {dice}, bce {bce}); samples: {ids:?}. Lower the learning rate or check these images"
    )]
    NonFiniteLoss {
        /// Epoch of the failing step (1-based, as logged).
        epoch: usize,
        /// Optimiser step at which the loss was not finite.
        step: usize,
        /// The total loss.
        total: f64,
        /// Its Dice term.
        dice: f64,
        /// Its BCE term.
        bce: f64,
        /// The batch's sample ids, to find a corrupt image.
        ids: Vec<String>,
    },
    /// The device failed to run or return a computation (a GPU error, a tensor of the wrong type).
    #[error("device: {0}")]
    Device(String),
    /// Anything else, with its message.
    #[error("{0}")]
    Other(String),
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    /// An [`TrainError::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            error: source,
        }
    }
}

impl From<tgcnet_io::IoError> for TrainError {
    fn from(e: tgcnet_io::IoError) -> Self {
        // Through the CLIP error, as when tensor files lived in `tgcnet-clip`.
        TrainError::Clip(e.into())
    }
}
