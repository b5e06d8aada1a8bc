//! Appizer storage: the metadata store (organisations, projects, keys, audit log) behind
//! one trait with SQLite and PostgreSQL backends chosen by URL; the durable queue (the
//! write-ahead log of events); the Parquet event store
//! queried with DataFusion.

pub mod background;
pub mod events;
pub mod leases;
pub mod metadata;
pub mod persons;
pub mod push;
pub mod queue;
pub mod scope;
pub mod team;
pub mod testing;

pub use metadata::{open_metadata_store, Backend, MetadataStore, StoreError};
pub use scope::ProjectScope;
