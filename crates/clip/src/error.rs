use std::path::PathBuf;

/// Errors of the CLIP crate. Every variant names the file or key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// Shown in the message, and deliberately not the error's `source()`: a report printing the
        /// whole chain would repeat the OS message.
        error: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("{path}: invalid CLIP config: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{path}: missing tensor `{key}` (expected shape {expected:?})")]
    MissingKey {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
    },
    #[error("{path}: tensor `{key}` has shape {found:?}, the model expects {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: unknown weight key(s) not used by the model: {keys:?}")]
    UnusedKeys { path: PathBuf, keys: Vec<String> },
    #[error("{path}: tensor `{key}` has unsupported dtype {dtype}")]
    Dtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: cannot read image: {message}")]
    Image { path: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

pub type Result<T> = std::result::Result<T, ClipError>;

impl ClipError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClipError::Io {
            path: path.into(),
            error: source,
        }
    }
}
