//! SQLite files and connections, prepared before the pool opens.

use std::path::Path;

use sqlx::{AnyConnection, Executor};

use crate::metadata::StoreError;

pub(super) async fn configure_sqlite(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    // WAL lets readers proceed during a write; FULL sync keeps every committed key.
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    conn.execute("PRAGMA busy_timeout = 5000").await?;
    // Person lookups and updates touch pages all over the file: keep more of it in
    // memory (16 MB of cache per connection) and read the rest through a memory map.
    conn.execute("PRAGMA cache_size = -16384").await?;
    conn.execute("PRAGMA mmap_size = 268435456").await?;
    Ok(())
}

/// Creates the database file's directory and asks SQLite to create the file.
pub(super) fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path != ":memory:" {
        if let Some(parent) = Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Setup(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
    }
    Ok(match query {
        Some(q) if q.contains("mode=") => format!("sqlite://{path}?{q}"),
        Some(q) => format!("sqlite://{path}?{q}&mode=rwc"),
        None => format!("sqlite://{path}?mode=rwc"),
    })
}
