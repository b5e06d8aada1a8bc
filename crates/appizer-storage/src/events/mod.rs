//! The event store: recent events in an in-memory Arrow buffer (queryable at once),
//! flushed by size or age to Parquet files partitioned
//! `project=<id>/date=<yyyy-mm-dd>/p<partition>-<uuid>.parquet` (in a directory or a
//! bucket: [`files`]), each catalogued in the metadata
//! store with the highest queue offset it holds. Queries read the catalogued files of a
//! project (pruned by time range from the catalog) unioned with its buffered batches.
//! Each file's footer also holds its event counts per name and quarter hour
//! ([`rollup`]), so counts over aligned ranges need no scan.

pub mod files;
pub mod query;
pub mod rollup;
pub mod schema;
mod store;

pub use query::{list_events, Cursor, EventFilter};
pub use schema::{batch_to_events, event_schema, events_to_batch, StoredEvent};
pub use store::{
    Compaction, Counts, EventStore, EventStoreConfig, EventStoreError, RecentEvent, Taken,
    Unrolled, KEY_COLUMNS,
};
