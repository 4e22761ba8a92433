//! The 5-minute monitor: record every failed pipeline once, keep per-project state, flag stuck
//! pipelines, optionally re-run failures, emit CloudWatch metrics.
//!
//! # Finding what changed with a constant number of DevLake calls
//!
//! DevLake lists pipelines only newest-id-first (`GET /pipelines`, filters `status`, `pending`,
//! `blueprint_id`, `label`) and has no "changed since". A pipeline's id is fixed at creation,
//! but its finished state is not: pipelines finish out of id order, and a re-run keeps the id and
//! the previous run's `finishedAt`: DevLake only sets `status = TASK_RERUN`, the runner sets a new
//! `beganAt` when it starts it, and `finishedAt` is overwritten only when the re-run ends. A re-run is
//! therefore never in `?pending=1` (which wants `finishedAt` null) and, for all but the newest
//! ids, never near the top of a listing. A restart of DevLake turns running pipelines into
//! `TASK_RESUME` (not "pending" either) or, with `RESUME_PIPELINES=false`, `TASK_FAILED` with
//! `finishedAt` untouched; a cancelled queued pipeline gets no timestamp at all.
//!
//! The cursor ([`MonitorCursor`](crate::store::MonitorCursor)) keeps an invariant instead:
//! **every pipeline with an id ≤ `maxPipelineId` either had its current finished state processed,
//! or is in `watch`.** Each run goes through these phases, in order (`run.rs` names them, one
//! module each):
//!
//! 1. **Observe** (`observe.rs`): the listings, concurrently, then the look-ups.
//!    * `GET /pipelines` (no filter) newest first until a page reaches `maxPipelineId`: every
//!      pipeline created since the last run, with its status. One page (500 rows) at steady
//!      state. Only this listing moves `maxPipelineId`, because only it covers a contiguous id
//!      range.
//!    * `GET /pipelines?pending=1`, `?status=TASK_RERUN` and `?status=TASK_RUNNING` (all pages):
//!      queued and running pipelines — stuck detection — and re-runs of pipelines of any age,
//!      queued or running, which so enter `watch` and are looked at until they end.
//!    * `GET /pipelines?status=S&pageSize=100` for each counted status, newest first: the first
//!      page is the safety net for a recent re-run that was queued, ran and failed again entirely
//!      between two runs (recognised by an end after the watermark); further pages (at most
//!      [`RECHECK_PAGES`]) reach down to the oldest *open failure*.
//!    * `GET /pipelines/{id}` for watched ids none of the listings showed, for open failures that
//!      vanished from the failure listings (they ran again and ended some other way), and for a
//!      few open failures older than the listings reach (round robin).
//! 2. **Plan** (`plan.rs`, pure): which finished states are new, which pipelines stay watched,
//!    which are stuck, and the next cursor.
//! 3. **Resolve projects** (`resolve.rs`): the project of every blueprint involved (the sweep of
//!    `GET /blueprints`, the cache in the table, then DevLake); then, pure, the new facts grouped
//!    by project and each project's flags (stuck, scheduled run missed, stuck cancel not taken).
//!    The projects with new facts or a changed flag are the ones written.
//! 4. **Commit** (`commit.rs`): each such project's new failure events and state in one
//!    conditional transaction; the cursor's open failures, watch list and flags follow.
//! 5. **Re-run** (`rerun.rs`, `remedy.rs`): the auto-rerun of failures recorded now, and
//!    `STUCK_ACTION`'s cancels and re-runs of stuck pipelines.
//! 6. **Save the cursor** (`run.rs`): last of what the run's progress depends on, conditionally
//!    on the revision it was loaded at; on the day's first run, after the projects DevLake no
//!    longer has have left the table.
//! 7. **Expire** (`expiry.rs`): on the day's first run, the recent-failure lists pruned to the
//!    failure window.
//!
//! A dry run goes through the same phases and reads the same: every write goes through one type
//! (`writer.rs`), which for a dry run only works out what would be written.
//!
//! An *open failure* is the latest recorded failure of a project whose latest finished pipeline
//! failed — the pipeline someone re-runs from the Config UI. Checking each one every run means
//! a re-run of it is seen however old it is and however fast it ran: one that fails again ends
//! at another time (a new failure), one that succeeds leaves the failure listing (looked up,
//! then the project's latest status, last success and streak move in that run).
//!
//! The end of a finished pipeline is its `finishedAt`, unless DevLake ended it without stamping
//! a new one (restart without resume, cancellation of a queued pipeline): then its `updatedAt`,
//! saved with the status. Both come from the row, so the failure key (id + end) is stable and a
//! failure is recorded once. A finished state is *new* when its id is above the cursor, or
//! watched, or it ended after the watermark (the latest end processed, DevLake's own clock), or
//! it is an open failure ending at another time. New states are processed; unfinished pipelines
//! (and any not processable this time) go to `watch`. The listings run concurrently, so the order in
//! which DevLake answers does not matter: a pipeline seen finished somewhere and unfinished
//! elsewhere is processed *and* kept watched. Steady state is therefore 6 calls with the default
//! two failure statuses, whatever the number of blueprints. What can add calls is real change,
//! not size: look-ups for watched pipelines that ended outside the newest 500, more pages of
//! step 2 while a queue of thousands is waiting (one call per 500), deeper failure pages while
//! an open failure is older than the newest 100 failures, and blueprint look-ups.
//!
//! Running time (stuck detection) counts from `beganAt`, which DevLake's runner sets at every
//! start of a pipeline: for a re-run or a resumed pipeline it is the current attempt's start.
//!
//! Processing is idempotent, so overlap and duplicate deliveries are harmless: a failure event's
//! key is DevLake data (pipeline id + end), written with `attribute_not_exists(pk)` in
//! the same transaction as the project's counter (`ADD failuresTotal`) and state, guarded by the
//! project's revision; a replayed success or cancellation changes nothing. The cursor is saved
//! last, conditionally on the revision it was loaded at; if an overlapping run saved first, its
//! cursor (equally complete) is kept. A run that fails (DevLake down or 428, DynamoDB unavailable)
//! saves no cursor, and the next run redoes the same work without double counting.
//!
//! Known limits: a re-run of a pipeline that is not its project's open failure, older than the
//! 100 most recent failures of its status, that is queued, runs and ends entirely between two
//! runs is missed (one seen queued or running is not); an open failure beyond the failure
//! listings' depth is re-checked a few per run, so a re-run of it may take more than one run to
//! be seen; a re-run ended without a new `finishedAt` within 5 seconds of its previous end
//! cannot be told from that end; a first run (or `rescan`) pages back only to pipelines created
//! up to the sum of `INITIAL_LOOKBACK_HOURS` and `STUCK_AFTER_HOURS` ago; and paging is by
//! offset, so a pipeline *deleted* while a multi-page listing is read can shift one row past the
//! reader (new pipelines only shift rows down, which re-reads a row, harmlessly). The watch list
//! lives in the one cursor item, which holds some tens of thousands of ids within DynamoDB's
//! 400 KB.
//!
//! # Other decisions
//!
//! * Ad-hoc pipelines (`blueprintId` 0) and pipelines of deleted blueprints have no project: they
//!   are counted in `skippedWithoutProject` and not recorded, like DevLake's own notification
//!   (`ProjectName` `""`). A legacy blueprint without a project is recorded under its own name.
//! * Blueprint → project names come from a one-page sweep of `GET /blueprints` each run
//!   ([`SWEEP_PAGE`] rows, rotating over the pages when there are more): a
//!   renamed project is recorded under its new name from the next run the sweep covers its
//!   blueprint (every run up to that many blueprints). Names are also cached in `BLUEPRINT`
//!   items, trusted for a day, and otherwise asked from DevLake (`GET /blueprints/{id}`, or one
//!   paged `GET /blueprints` when more than [`BLUEPRINT_LIST_THRESHOLD`] are unknown). A 404 is
//!   never cached at once: the pipelines wait (watched) until the blueprint answers again, a
//!   complete sweep lacks it, or it has answered 404 for an hour.
//! * Deleted projects (their blueprint is deleted with them) and old names of renamed ones
//!   leave the table on the first run of each UTC day, checked against a complete blueprint
//!   listing: the metrics page stops showing them and their alerts clear.
//! * Stuck: a `TASK_RUNNING`/`TASK_RESUME` pipeline whose current attempt started more than
//!   `STUCK_AFTER_HOURS` ago flags its project; the flag is cleared when no pipeline of the project is
//!   stuck any more (it finished or was cancelled).
//! * `STUCK_ACTION` cancels stuck pipelines, has the next run check that they stopped (a project
//!   whose pipeline still runs is flagged `stuck_cancel_failed`) and may re-run them through the
//!   auto-rerun's claims ([`remedy`]).
//! * Missed scheduled runs: the blueprint sweep also gives each managed blueprint's
//!   `cronConfig`; a scheduled run due more than [`schedule::SCHEDULE_GRACE`] ago with no sign of
//!   a pipeline since flags the project `schedule_missed` ([`schedule`]). The watches live in the
//!   cursor and a project is written only when a flag changes, so neither costs a call.
//! * Auto-rerun re-runs a project's newest failure, recorded by this run, when nothing of its
//!   blueprint is pending; the `RERUN` item is claimed first (conditional on the failure key and
//!   `AUTO_RERUN_MAX`), so a failure is never re-run twice even if the POST fails.

mod commit;
pub mod config;
mod error;
pub mod expiry;
mod flags;
mod observe;
pub mod payload;
mod plan;
mod project;
pub mod remedy;
mod rerun;
mod resolve;
mod run;
pub mod runtime;
pub mod schedule;
mod summary;
mod writer;

pub(crate) use commit::{commit_facts, CommitContext, Recorder};
pub use config::{MonitorConfig, MonitorSettings, StuckAction};
pub use error::MonitorError;
pub use observe::{RECENT_FAILURES_PAGE, RECHECK_PAGES};
pub use payload::{PayloadError, Request};
pub(crate) use plan::ended_at;
pub use project::MAX_MESSAGE_CHARS;
pub use rerun::{PENDING_RERUNS_PER_RUN, RERUN_CLAIM_LEASE};
pub use resolve::{BLUEPRINT_LIST_THRESHOLD, SWEEP_PAGE};
pub use run::{Monitor, JOB};
pub use summary::{CursorBrief, FailureBrief, RunIssue, RunStatus, Summary, LISTED_FAILURES};

pub use crate::deadline::Deadline;
