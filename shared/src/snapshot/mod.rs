//! Render once, serve many: the metrics page's state, published by whoever commits, so a scrape
//! costs the same whatever the number of projects and failures.
//!
//! # Why
//!
//! Reading every project item on every scrape made a scrape's DynamoDB calls, bytes and time grow
//! with the projects and the failures in the window, and every Prometheus server (an HA pair
//! scrapes twice) paid that every 15–60 s, while the state changes only when a job commits.
//!
//! # What is published, and why not the rendered page
//!
//! After its commits, a committer copies the whole state the page renders — every project with
//! its recent-failure list ([`PublishedState`]) — as one compressed document into the `SNAPSHOT`
//! partition, split into chunks under DynamoDB's 400 KB item limit. It is the page's *input*, not
//! the page: the page also depends on the scrape's time (failures leave the `FAILURE_WINDOW_DAYS`
//! window continuously, about every 30 s at 20,000 failures a week, commit or not) and on the
//! metrics function's own `TIMEZONE`, format (Prometheus text or OpenMetrics) and window. The run
//! records are not in it either: the monitor records a run every 5 minutes, and they are read
//! with the snapshot's head in the scrape's one call.
//!
//! The metrics function renders the published state once per version (and per format), keeps
//! the result compressed between scrapes, and on each scrape only adds the live section and
//! re-renders the few parts of the compatibility series whose failures left the window since
//! ([`page`]): a scrape is one DynamoDB call, plus one more the first time it sees a new version.
//!
//! # Versions, and why stale state is never published
//!
//! A publish takes a number from a counter on the head item (strictly increasing), then reads the
//! state strongly consistent, then reads the head again: if another publish took a number
//! meanwhile, that one started reading later and covers everything this one read, so this one
//! stops (`Superseded`). Otherwise it writes its generation, conditional on the head naming an
//! older one. So a generation with a higher version always holds a later read of the state, and
//! the page never goes back to older state, whatever publishers race (the monitor, the
//! automation, a push path).
//!
//! The counter is bumped by the publish, not inside each commit's transaction: a shared item in
//! every `TransactWriteItems` would make concurrent commits (the monitor commits 8 projects at
//! once) cancel each other (`TransactionConflict`). A commit whose publish never happens (the
//! process died between them) is published by the monitor's next run, which publishes on every
//! run (writing only when the state changed, or once a day to keep the chunks from their TTL): at
//! most one monitor interval late.
//!
//! # Freshness
//!
//! A committer calls [`publish_after_commit`] after its commits; when it returns `Published` or
//! `Superseded`, the next scrape's strongly consistent read of the head sees a generation that
//! holds the commits. Run records (the automation writes nothing else the page shows) are read by
//! each scrape, so they are fresh without publishing.
//! Before the first publish (a new table, or the minutes after upgrading) a scrape reads the
//! project items directly, as it did before snapshots existed.

pub mod page;

use std::io::{Read, Write};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::store::{
    PublishedState, SnapshotPut, SnapshotStore, StoreError, SNAPSHOT_REFRESH_AFTER,
};

/// The encoding written by this version; a reader refuses any other and reads directly instead.
pub const FORMAT: u32 = 1;

/// Largest decoded snapshot accepted (1 GB): far beyond any page a function URL can answer, and a
/// bound on what a corrupt or hostile blob can make the metrics function allocate.
const MAX_DECODED_BYTES: u64 = 1 << 30;

/// What [`publish_after_commit`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// The state read is now the published generation `version`.
    Published {
        version: u64,
        projects: usize,
        /// Encoded (compressed) size.
        bytes: usize,
    },
    /// The published generation `version` already held exactly this state (and is less than a
    /// day old): nothing written.
    Unchanged { version: u64 },
    /// A publish that started reading later covers this one: nothing written (or the write was
    /// refused because that one is stored already).
    Superseded { number: u64 },
}

/// A published snapshot that cannot be decoded (written by another version, or damaged): the
/// metrics function reads the state directly instead. Retrying does not help.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error("the snapshot does not decompress: {0}")]
    Compression(#[source] std::io::Error),
    #[error("the snapshot decompresses to more than {MAX_DECODED_BYTES} bytes")]
    TooLarge,
    #[error("the snapshot is not a published state: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the snapshot is in encoding {0}; this version reads encoding {FORMAT}")]
    Format(u32),
}

/// The document a snapshot holds: the state and the encoding it was written in.
#[derive(Serialize)]
struct Envelope<'a> {
    format: u32,
    state: &'a PublishedState,
}

#[derive(Deserialize)]
struct OwnedEnvelope {
    format: u32,
    state: PublishedState,
}

/// `state` as stored: JSON, zlib-compressed; and a digest of the JSON, so a publish of the same
/// state again can skip the write.
pub fn encode(state: &PublishedState) -> Result<(Vec<u8>, String), StoreError> {
    let failed = |message: String| StoreError::Failed {
        source: None,
        operation: "encode the metrics snapshot".into(),
        message,
    };
    let json = serde_json::to_vec(&Envelope {
        format: FORMAT,
        state,
    })
    .map_err(|e| failed(e.to_string()))?;
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(json.len() / 6),
        flate2::Compression::default(),
    );
    encoder
        .write_all(&json)
        .map_err(|e| failed(e.to_string()))?;
    let blob = encoder.finish().map_err(|e| failed(e.to_string()))?;
    Ok((blob, digest(&json)))
}

/// The state a blob of [`encode`] holds.
pub fn decode(blob: &[u8]) -> Result<PublishedState, DecodeError> {
    let mut json = Vec::with_capacity(blob.len() * 6);
    flate2::read::ZlibDecoder::new(blob)
        .take(MAX_DECODED_BYTES + 1)
        .read_to_end(&mut json)
        .map_err(DecodeError::Compression)?;
    if json.len() as u64 > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let envelope: OwnedEnvelope = serde_json::from_slice(&json).map_err(DecodeError::Json)?;
    if envelope.format != FORMAT {
        return Err(DecodeError::Format(envelope.format));
    }
    Ok(envelope.state)
}

/// CRC-32 and 64-bit FNV-1a of `data`, with its length: two unrelated checksums, so two states
/// that differ are taken for the same (and a needed write skipped) with odds of about 2⁻⁹⁶.
fn digest(data: &[u8]) -> String {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let fnv = data.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{:08x}-{fnv:016x}-{}", crc.sum(), data.len())
}

/// Publishes the state as it is now, for the metrics page; call it after committing project
/// state (the monitor after every run, a push path after each batch of commits). A run record
/// alone needs no publish: every scrape reads the run records. `now` only stamps the generation
/// (`publishedAt`).
///
/// Cost: the state's read (every project item, strongly consistent), the encoding (CPU), a read
/// of the head, and, when the state changed, the chunks' and the head's writes. It never
/// publishes older state over newer (see the module documentation); `Superseded` means a
/// concurrent publish covers this one. An error leaves the published generation as it was: the
/// commits stay unpublished until the next publish (the monitor's next run at the latest), so
/// callers report it (the run is `partial`) rather than failing the commits.
pub async fn publish_after_commit<S>(
    store: &S,
    now: DateTime<Utc>,
) -> Result<Publication, StoreError>
where
    S: SnapshotStore + ?Sized,
{
    let started = std::time::Instant::now();
    let number = store.take_publish_number().await?;
    let state = store.snapshot_input().await?;
    let (blob, digest) = encode(&state)?;
    let head = store.snapshot_head().await?;
    let outcome = if head.taken != number {
        Publication::Superseded { number }
    } else if let Some(published) = head.published.filter(|p| {
        // Rewritten once a day all the same, so its chunks never reach their TTL.
        p.digest == digest
            && p.published_at
                .is_some_and(|at| at > now - SNAPSHOT_REFRESH_AFTER)
    }) {
        Publication::Unchanged {
            version: published.version,
        }
    } else if store
        .put_snapshot(SnapshotPut {
            version: number,
            digest: &digest,
            blob: &blob,
            now,
        })
        .await?
    {
        Publication::Published {
            version: number,
            projects: state.projects.len(),
            bytes: blob.len(),
        }
    } else {
        Publication::Superseded { number }
    };
    tracing::info!(
        outcome = ?outcome,
        projects = state.projects.len(),
        bytes = blob.len(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
        "metrics snapshot publish"
    );
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, ProjectState, SnapshotHead};

    fn state(names: &[&str]) -> PublishedState {
        PublishedState {
            projects: names
                .iter()
                .map(|n| ProjectState {
                    project_name: n.to_string(),
                    recent_failures: vec!["2026-11-28T10:00:00.000Z#7".into()],
                    ..Default::default()
                })
                .collect(),
            decode_errors: 1,
        }
    }

    #[test]
    fn encoding_round_trips_and_refuses_what_it_cannot_read() {
        let s = state(&["a", "b/\"c\""]);
        let (blob, d1) = encode(&s).unwrap();
        assert_eq!(decode(&blob).unwrap(), s);
        assert_eq!(encode(&s).unwrap().1, d1, "the digest is deterministic");
        assert_ne!(encode(&state(&["a"])).unwrap().1, d1);
        assert!(matches!(
            decode(b"not zlib"),
            Err(DecodeError::Compression(_))
        ));
        let future =
            serde_json::to_vec(&serde_json::json!({"format": 2, "state": {"projects": []}}))
                .unwrap();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&future).unwrap();
        assert!(matches!(
            decode(&z.finish().unwrap()),
            Err(DecodeError::Format(2))
        ));
    }

    /// A store where another publisher takes a number while this one reads the state.
    struct Racing {
        inner: MemoryStore,
        race: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl SnapshotStore for Racing {
        async fn take_publish_number(&self) -> Result<u64, StoreError> {
            self.inner.take_publish_number().await
        }
        async fn snapshot_head(&self) -> Result<SnapshotHead, StoreError> {
            self.inner.snapshot_head().await
        }
        async fn snapshot_input(&self) -> Result<PublishedState, StoreError> {
            if self.race.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.inner.take_publish_number().await?;
            }
            self.inner.snapshot_input().await
        }
        async fn put_snapshot(&self, put: SnapshotPut<'_>) -> Result<bool, StoreError> {
            self.inner.put_snapshot(put).await
        }
    }

    #[tokio::test]
    async fn a_publish_overtaken_while_reading_writes_nothing() {
        let store = Racing {
            inner: MemoryStore::new(),
            race: true.into(),
        };
        let now = Utc::now();
        assert_eq!(
            publish_after_commit(&store, now).await.unwrap(),
            Publication::Superseded { number: 1 }
        );
        assert_eq!(store.snapshot_head().await.unwrap().published, None);
        // The overtaking publisher (number 2) covers it; the next one here takes 3.
        assert!(matches!(
            publish_after_commit(&store, now).await.unwrap(),
            Publication::Published { version: 3, .. }
        ));
    }

    #[tokio::test]
    async fn publishing_the_same_state_twice_writes_once() {
        let store = MemoryStore::new();
        let now = Utc::now();
        let first = publish_after_commit(&store, now).await.unwrap();
        assert!(matches!(first, Publication::Published { version: 1, .. }));
        assert_eq!(
            publish_after_commit(&store, now).await.unwrap(),
            Publication::Unchanged { version: 1 }
        );
        let head: SnapshotHead = store.snapshot_head().await.unwrap();
        assert_eq!(head.taken, 2);
        assert_eq!(head.published.unwrap().version, 1);
        // A day later the same state is written again, before its chunks' TTL.
        let later = now + SNAPSHOT_REFRESH_AFTER + chrono::Duration::seconds(1);
        assert!(matches!(
            publish_after_commit(&store, later).await.unwrap(),
            Publication::Published { version: 3, .. }
        ));
    }
}
