//! Event processing: capture decoding, validation, enrichment, the durable queue consumer
//! and the Parquet event store. Not built yet; its place in the design is described in
//! `ARCHITECTURE.md`.
