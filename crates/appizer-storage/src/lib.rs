//! Appizer storage: the metadata store (organisations, projects, keys, audit log) behind
//! one trait with SQLite and PostgreSQL backends chosen by URL. Later: the durable queue
//! and the Parquet event store.

pub mod metadata;

pub use metadata::{open_metadata_store, Backend, MetadataStore, StoreError};
