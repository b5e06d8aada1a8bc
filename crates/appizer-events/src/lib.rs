//! Event processing: decoding the Segment and PostHog capture formats into the one
//! internal [`appizer_core::event::Event`], validating each message (a bad message is
//! dropped with an ingestion warning; the rest of the batch goes on), and, later in the
//! pipeline, enrichment by the workers.

pub mod capture;
