//! Errors of the data crate. Every variant names the file it is about, and the row, column or key where
//! that applies, so that a user can fix the input without reading our code.

use std::path::PathBuf;

/// Errors of the data crate.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O error (missing file, permission, truncated read).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file that could not be decoded as an image (PNG, JPEG, DICOM, NIfTI).
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },
    /// A malformed table or annotation file (CSV, xlsx, JSON); `location` is e.g. "row 12, column `text`".
    #[error("{path}: {location}: {message}")]
    Table {
        path: PathBuf,
        location: String,
        message: String,
    },
    /// A required column is missing from a table.
    #[error("{path}: missing column `{column}` (columns found: {found:?})")]
    MissingColumn {
        path: PathBuf,
        column: String,
        found: Vec<String>,
    },
    /// The dataset layout could not be recognised, or a forced format does not match.
    #[error("{path}: {message}")]
    Layout { path: PathBuf, message: String },
    /// A split name that the dataset does not have.
    #[error("{path}: no split `{split}` (splits: {available:?})")]
    NoSplit {
        path: PathBuf,
        split: String,
        available: Vec<String>,
    },
    /// An image and its mask have different sizes.
    #[error("{mask}: mask is {mask_size:?} (width, height), image {image} is {image_size:?}")]
    SizeMismatch {
        image: PathBuf,
        mask: PathBuf,
        image_size: (usize, usize),
        mask_size: (usize, usize),
    },
    /// A sample that has no mask where one is required (training).
    #[error("{image}: sample `{id}` has no mask")]
    NoMask { id: String, image: PathBuf },
    /// An invalid option value (e.g. an unknown format name).
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
}

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn image(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Image {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn table(
        path: impl Into<PathBuf>,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DataError::Table {
            path: path.into(),
            location: location.into(),
            message: message.into(),
        }
    }

    pub(crate) fn layout(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Layout {
            path: path.into(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        DataError::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }

    /// The file this error is about, when there is one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            DataError::Io { path, .. }
            | DataError::Image { path, .. }
            | DataError::Table { path, .. }
            | DataError::MissingColumn { path, .. }
            | DataError::Layout { path, .. }
            | DataError::NoSplit { path, .. } => Some(path),
            DataError::SizeMismatch { mask, .. } => Some(mask),
            DataError::NoMask { image, .. } => Some(image),
            DataError::Invalid { .. } => None,
        }
    }
}
