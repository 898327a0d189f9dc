//! The error type of the CLIP crate.

use std::path::PathBuf;

/// Errors of the CLIP crate. Every variant names the file or key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A file or directory operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Shown in the message, and deliberately not the error's `source()`: a report printing the
        /// whole chain would repeat the OS message.
        error: std::io::Error,
    },
    /// A file that is not valid safetensors.
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A CLIP config that cannot be read or describes an unsupported model.
    #[error("{path}: invalid CLIP config: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A weight file lacks a tensor the model needs.
    #[error("{path}: missing tensor `{key}` (expected shape {expected:?})")]
    MissingKey {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// A tensor whose shape differs from the model's parameter.
    #[error("{path}: tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A weight file has tensors the model does not use (a wrong or mismatched file).
    #[error("{path}: unknown weight key(s) not used by the model: {keys:?}")]
    UnusedKeys {
        /// The file.
        path: PathBuf,
        /// The unused keys.
        keys: Vec<String>,
    },
    /// A tensor of a dtype we do not read.
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    Dtype {
        /// The file.
        path: PathBuf,
        /// The tensor's key.
        key: String,
        /// The dtype in the file.
        dtype: String,
    },
    /// An image that cannot be decoded.
    #[error("{path}: cannot read image: {message}")]
    Image {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer's vocabulary or merges are malformed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// This crate's result.
pub type Result<T> = std::result::Result<T, ClipError>;

impl From<tgcnet_io::IoError> for ClipError {
    fn from(e: tgcnet_io::IoError) -> Self {
        // The same variants as before tensor files moved to `tgcnet-io`: callers that match on them
        // see no difference.
        match e {
            tgcnet_io::IoError::Io { path, error } => ClipError::Io { path, error },
            tgcnet_io::IoError::Safetensors { path, message } => {
                ClipError::Safetensors { path, message }
            }
            tgcnet_io::IoError::Dtype { path, key, dtype } => ClipError::Dtype { path, key, dtype },
        }
    }
}

impl ClipError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClipError::Io {
            path: path.into(),
            error: source,
        }
    }
}
