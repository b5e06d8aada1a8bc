//! Local push services that behave as the real ones do, for tests and for developing
//! apps without Apple or Google accounts: they check what the real services check,
//! answer with their statuses, can be told to fail, and list what they received.
//!
//! In place: Web Push (`webpush`).

pub mod webpush;
