//! How an import run fails: refused before it starts, stopped, or a file or database error.

use diesel::result::Error as DieselError;

use super::csvfile::FileError;
use crate::records::service::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file's rows cannot be matched to records: no id column, or key fields not mapped.
    #[error("{0}")]
    NoKey(String),
    #[error("{0}")]
    File(#[from] FileError),
    #[error("{0}")]
    Refused(String),
    /// Another run (or an undo) holds the source.
    #[error("{0}")]
    SourceBusy(String),
    #[error("The run was cancelled, or taken over by another process after it went silent; its last chunk was rolled back.")]
    Stopped,
    #[error(transparent)]
    Db(DieselError),
}

impl From<DieselError> for ImportError {
    fn from(e: DieselError) -> Self {
        match e {
            // Only `record_outcomes` asks for a rollback: the run is no longer this process's.
            DieselError::RollbackTransaction => ImportError::Stopped,
            other => ImportError::Db(other),
        }
    }
}

impl From<RecordError> for ImportError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Db(db) => ImportError::Db(db),
            other => ImportError::Refused(other.to_string()),
        }
    }
}
