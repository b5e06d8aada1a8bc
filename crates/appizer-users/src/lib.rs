//! User service: persons, distinct ids, identity resolution, aliases and profile
//! enrichment. Not built yet; its place in the design is described in `ARCHITECTURE.md`.
