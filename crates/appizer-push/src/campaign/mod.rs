//! Campaigns: audiences, schedules, triggers, pacing, templates and A/B tests, sent
//! through the outbox.
//!
//! - `assign`: which variant or control group a person is in, and the winner-mode test
//!   share, as functions of campaign and person alone;
//! - `definition`: the request's definition checked whole into the runner's plan;
//! - `content`: a variant's title and body templates with translations by locale;
//! - `pacing`: the per-campaign throttle and the per-person frequency cap;
//! - `service`: campaigns as the API uses them (create, change, act, preview,
//!   test-send), checked against the project's data and audited;
//! - `state`: the campaign's states and the one table of moves between them;
//! - `winner`: the winner-mode decision from the variants' rates;
//! - `report`: a campaign's figures per group, with their statistics, as funnels over
//!   the assignment, delivery and goal events;
//! - `runner`: starts due runs and walks each run's audience into the outbox, a page
//!   at a time, exactly once per device across crashes;
//! - `schedule`: local times in a person's zone, quiet hours and cron schedules, across
//!   daylight saving;
//! - `when`: the request's `when` (now, at, local time, recurring, triggered) checked
//!   into a schedule;
//! - `triggers`: triggered campaigns: the workers' events in, pending sends recorded,
//!   cancelled and sent after their delay;
//! - `template`: message templates over person and trigger-event properties, checked
//!   when saved and rendered with limits.

pub mod assign;
pub mod content;
pub mod definition;
pub mod pacing;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod service;
pub mod state;
pub mod template;
pub mod triggers;
pub mod when;
pub mod winner;
