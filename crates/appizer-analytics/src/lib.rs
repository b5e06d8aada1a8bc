//! Analytics engine: trends, funnels, retention, custom metrics and segments over the
//! event store with DataFusion. Not built yet; its place in the design is described in
//! `ARCHITECTURE.md`.
