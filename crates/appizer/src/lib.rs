//! Appizer.
