//! Errors of the metadata store.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported metadata store URL `{0}`: expected sqlite:// or postgres://")]
    UnsupportedUrl(String),
    #[error("cannot prepare the metadata store: {0}")]
    Setup(String),
    #[error("the metadata store is already initialised")]
    AlreadyInitialized,
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A partition's write under a lease that passed to another holder.
    #[error("the partition's lease was lost: {0}")]
    Fenced(String),
    /// What this backend does not do (and what does it instead).
    #[error("not supported: {0}")]
    Unsupported(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("metadata store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("metadata store unavailable: {0}")]
    Unavailable(sqlx::Error),
    #[error("metadata store error: {0}")]
    Database(sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e),
            _ => StoreError::Database(e),
        }
    }
}
