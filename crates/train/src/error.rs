use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] tgcnet_model::error::ModelError),
    #[error(transparent)]
    Data(#[from] tgcnet_data::DataError),
    #[error(transparent)]
    Clip(#[from] tgcnet_clip::ClipError),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// Shown in the message, and deliberately not the error's `source()`: a report printing the
        /// whole chain would repeat the OS message.
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    /// A run directory or dataset that cannot be trained from as asked.
    #[error("{path}: {message}")]
    RunDir { path: PathBuf, message: String },
    /// A file format we own that could not be written.
    #[error("writing {what}: {message}")]
    Serialize { what: &'static str, message: String },
    #[error("{path}: not a tgcnet checkpoint: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error(
        "non-finite loss at epoch {epoch}, step {step} (total {total}, dice {dice}, bce {bce}); samples: {ids:?}. Lower the learning rate or check these images"
    )]
    NonFiniteLoss {
        epoch: usize,
        step: usize,
        total: f64,
        dice: f64,
        bce: f64,
        ids: Vec<String>,
    },
    /// The device failed to run or return a computation (a GPU error, a tensor of the wrong type).
    #[error("device: {0}")]
    Device(String),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, TrainError>;

impl TrainError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            error: source,
        }
    }
}
