//! The store's side of the published snapshot of the metrics page (see `crate::snapshot` for the
//! why and the protocol): what a snapshot holds, its head, and what one scrape reads.
//!
//! In DynamoDB (partition `SNAPSHOT`, next to the state it copies):
//!
//! | item | `sk` | attributes |
//! | --- | --- | --- |
//! | head | `HEAD` | `taken` (last publish number handed out), `version` (the published generation), `chunks`, `bytes`, `digest`, `publishedAt` |
//! | chunk | `CHUNK#<version, 20 digits>#<index, 4 digits>` | `data` (binary, at most [`SNAPSHOT_CHUNK_BYTES`]), `version`, `expiresAt` (TTL: [`SNAPSHOT_CHUNK_TTL`] after the publish) |
//!
//! A generation's chunks are written before the head names it, and left to the table's TTL once
//! it is replaced, so a scrape that read the head finds the chunks it names.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    ConnectionHealth, EventsReceived, MetricsSnapshot, ProjectState, RunRecord, StoreError,
};

/// Bytes of the compressed snapshot per chunk item: under DynamoDB's 400 KB item limit with room
/// for the keys and the other attributes.
pub const SNAPSHOT_CHUNK_BYTES: usize = 350_000;

/// How long a chunk lives (the table's TTL); the publisher rewrites the published generation
/// once it is [`SNAPSHOT_REFRESH_AFTER`] old, state changed or not, so it never expires while the
/// monitor runs.
pub const SNAPSHOT_CHUNK_TTL: chrono::Duration = chrono::Duration::days(3);

/// Age after which a publish rewrites the published generation even if the state is unchanged.
pub const SNAPSHOT_REFRESH_AFTER: chrono::Duration = chrono::Duration::days(1);

/// What a published snapshot holds: the part of the page's input that only a commit changes.
/// The run records are not in it (each scrape reads them, see [`PublishedRead`]), nor is anything
/// that depends on the scrape's time: the failures in the window are picked from the projects'
/// recent-failure lists at scrape time.
///
/// A field added to [`ProjectState`] flows through by itself (the snapshot is its serde form).
/// Anything else the page renders from stored items must be added here and read by
/// [`SnapshotStore::snapshot_input`], or it reaches the page only through the direct read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedState {
    /// Every stored project, in name order, with its recent-failure list.
    pub projects: Vec<ProjectState>,
    /// Project items the publishing read skipped because they did not decode (each was logged by
    /// the publisher); the page counts them in `devlake_metrics_decode_errors`.
    #[serde(default)]
    pub decode_errors: u64,
}

/// The published generation a head names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedVersion {
    /// The publish number of the publish that wrote it.
    pub version: u64,
    /// [`crate::snapshot`]'s digest of the state it holds: a publish of the same state skips the
    /// write.
    pub digest: String,
    /// Compressed bytes.
    pub bytes: u64,
    pub published_at: Option<DateTime<Utc>>,
}

/// The snapshot's head, read strongly consistent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotHead {
    /// The last publish number handed out by [`SnapshotStore::take_publish_number`] (0: none).
    pub taken: u64,
    /// The generation scrapes serve; `None` before the first publish.
    pub published: Option<PublishedVersion>,
}

/// One generation to publish.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotPut<'a> {
    /// The publish number taken before the state was read; each is put at most once.
    pub version: u64,
    pub digest: &'a str,
    /// The encoded state (`crate::snapshot::encode`).
    pub blob: &'a [u8],
    pub now: DateTime<Utc>,
}

/// What one scrape read: see [`super::MetricsSource::scrape`].
#[derive(Debug, Clone, PartialEq)]
pub enum ScrapeRead {
    /// No snapshot has been published yet (a new table, or the minutes after an upgrade before
    /// the monitor's first run): the state as read from its own items, the failures already
    /// picked for the window.
    Direct(MetricsSnapshot),
    Published(PublishedRead),
}

/// A scrape of a published snapshot: the live part, and the snapshot unless the caller holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedRead {
    pub version: u64,
    /// The encoded snapshot of `version`; `None` when the caller said it holds that version.
    pub blob: Option<Vec<u8>>,
    pub live: LiveRecords,
}

/// What every scrape reads itself, beside the project state: single items written without a
/// project commit (each job's run record, the events function's latest notification, the
/// automation's connection health), so they need no publish. A new item of that kind belongs
/// here and in the scrape's one BatchGetItem.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveRecords {
    pub automation: Option<RunRecord>,
    pub monitor: Option<RunRecord>,
    pub events: Option<EventsReceived>,
    /// From the `CONNECTION`/`HEALTH` item; empty before the automation's first complete test.
    pub connections: Vec<ConnectionHealth>,
    /// Items this read skipped because they did not decode (each logged).
    pub decode_errors: u64,
}

/// Where the published snapshot lives. Every publisher goes through
/// `crate::snapshot::publish_after_commit`, which uses these in order: take a number, read the
/// state, check the head, put.
#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Hands out the next publish number (strictly increasing, never reused).
    async fn take_publish_number(&self) -> Result<u64, StoreError>;

    /// The head, strongly consistent.
    async fn snapshot_head(&self) -> Result<SnapshotHead, StoreError>;

    /// Everything a snapshot holds, read strongly consistent after the call starts: every commit
    /// that completed before is in it.
    async fn snapshot_input(&self) -> Result<PublishedState, StoreError>;

    /// Makes `put` the published generation, unless the published one is newer: `Ok(false)`.
    /// Replaced generations are left to expire.
    async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<bool, StoreError>;
}
