//! The 5-minute monitor (docs/architecture.md): record every failed pipeline once, keep
//! per-project state, flag stuck pipelines, optionally re-run failures, emit CloudWatch metrics.
//!
//! # Finding what changed with a constant number of DevLake calls
//!
//! DevLake lists pipelines only newest-id-first (`GET /pipelines`, filters `status`, `pending`,
//! `blueprint_id`, `label`) and has no "changed since". A pipeline's id is fixed at creation,
//! but its finished state is not: pipelines finish out of id order, and a re-run keeps the id,
//! goes back to `TASK_RERUN` (pending, `finishedAt` null) and finishes again with a new
//! `finishedAt`. So "stop at the highest id seen" alone misses both late finishers and re-runs.
//!
//! The cursor ([`MonitorCursor`](crate::store::MonitorCursor)) keeps an invariant instead:
//! **every pipeline with an id ≤ `maxPipelineId` either had its current finished state processed,
//! or is in `watch`.** Each run:
//!
//! 1. `GET /pipelines` (no filter) newest first until a page reaches `maxPipelineId`: every
//!    pipeline created since the last run, with its status. One page (500 rows) at steady state.
//!    Only this listing moves `maxPipelineId`, because only it covers a contiguous id range.
//! 2. `GET /pipelines?pending=1` (all pages; at most one pending pipeline per blueprint): running
//!    and queued pipelines — stuck detection — and re-runs of *old* pipelines, which appear here
//!    as `TASK_RERUN`/`TASK_RUNNING` and so enter `watch`.
//! 3. `GET /pipelines?status=S&pageSize=100`, first page only, for each counted status: the safety
//!    net for a re-run that was queued, ran and failed again entirely between two runs (never
//!    seen pending). Such a row is recognised by `finishedAt > watermark`.
//! 4. `GET /pipelines/{id}` only for watched ids none of the listings showed (usually none: the
//!    watched pipelines are recent and on the first page of step 1).
//!
//! A finished state is *new* when its id is above the cursor, or watched, or it finished after
//! the watermark (the latest `finishedAt` processed, DevLake's own clock). New states are
//! processed; unfinished pipelines (and any not processable this time) go to `watch`. Steps 1–3
//! run concurrently, so the order in which DevLake answers does not matter: a pipeline seen
//! finished somewhere and unfinished elsewhere is processed *and* kept watched. Steady state is
//! therefore 4 calls with the default two failure statuses, whatever the number of blueprints.
//! What can add calls is real change, not size: look-ups for watched pipelines that finished
//! outside the newest 500, more pages of step 2 while a queue of thousands is pending (one call
//! per 500), and one blueprint look-up for a blueprint never seen before.
//!
//! Processing is idempotent, so overlap and duplicate deliveries are harmless: a failure event's
//! key is DevLake data (pipeline id + `finishedAt`), written with `attribute_not_exists(pk)` in
//! the same transaction as the project's counter (`ADD failuresTotal`) and state, guarded by the
//! project's revision; a replayed success or cancellation changes nothing. The cursor is saved
//! last, conditionally on the revision it was loaded at; if an overlapping run saved first, its
//! cursor (equally complete) is kept. A run that fails (DevLake down or 428, DynamoDB unavailable)
//! saves no cursor, and the next run redoes the same work without double counting.
//!
//! Known limits: a re-run of a pipeline older than the 100 most recent failures of its status
//! that is queued, runs and completes entirely between two runs is missed (one seen pending is
//! not); a first run (or `rescan`) pages back only to pipelines created up to the sum of
//! `INITIAL_LOOKBACK_HOURS` and `STUCK_AFTER_HOURS` ago; and paging is by offset, so a pipeline
//! *deleted* while a multi-page listing is read can shift one row past the reader (new pipelines
//! only shift rows down, which re-reads a row, harmlessly). The watch list lives in the one
//! cursor item, which holds some tens of thousands of ids within DynamoDB's 400 KB.
//!
//! # Other decisions
//!
//! * Ad-hoc pipelines (`blueprintId` 0) and pipelines of deleted blueprints have no project: they
//!   are counted in `skippedWithoutProject` and not recorded, like DevLake's own notification
//!   (`ProjectName` `""`). A legacy blueprint without a project is recorded under its own name.
//! * Blueprint → project names are cached in `BLUEPRINT` items and asked from DevLake only for a
//!   blueprint not seen before (`GET /blueprints/{id}`, or one paged `GET /blueprints` when more
//!   than [`BLUEPRINT_LIST_THRESHOLD`] are unknown); `rescan` refreshes them.
//! * Stuck: a `TASK_RUNNING`/`TASK_RESUME` pipeline whose `beganAt` is older than
//!   `STUCK_AFTER_HOURS` flags its project; the flag is cleared when no pipeline of the project is
//!   stuck any more (it finished or was cancelled).
//! * Auto-rerun re-runs a project's newest failure, recorded by this run, when nothing of its
//!   blueprint is pending; the `RERUN` item is claimed first (conditional on the failure key and
//!   `AUTO_RERUN_MAX`), so a failure is never re-run twice even if the POST fails.

pub mod config;
mod error;
pub mod expiry;
pub mod payload;
mod plan;
mod project;
mod run;
pub mod runtime;
mod summary;

pub use config::{MonitorConfig, MonitorSettings};
pub use error::MonitorError;
pub use payload::{PayloadError, Request};
pub use project::MAX_MESSAGE_CHARS;
pub use run::{Monitor, BLUEPRINT_LIST_THRESHOLD, RECENT_FAILURES_PAGE};
pub use summary::{CursorBrief, FailureBrief, RunIssue, RunStatus, Summary, LISTED_FAILURES};

pub use crate::deadline::Deadline;
