//! Push notification service: APNs, FCM and Web Push clients, campaigns, the delivery
//! outbox and delivery tracking. Not built yet; its place in the design is described in
//! `ARCHITECTURE.md`.
