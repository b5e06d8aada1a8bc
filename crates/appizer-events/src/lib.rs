//! Event processing: decoding the Segment and PostHog capture formats into the one
//! internal [`appizer_core::event::Event`], validating each message (a bad message is
//! dropped with an ingestion warning; the rest of the batch goes on), and the workers
//! that take events from the durable queue, enrich them, drop duplicates, store them
//! and feed the live stream and the real-time counters.

pub mod append;
pub mod capture;
pub mod consumers;
pub mod counters;
pub mod dedup;
pub mod enrich;
pub mod feed;
pub mod geoip;
pub mod metrics;
pub mod pipeline;
pub mod record;
pub mod warnings;
