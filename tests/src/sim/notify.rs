//! DevLake's pipeline notifications (`NOTIFICATION_ENDPOINT`, `NOTIFICATION_SECRET`), sent the
//! way DevLake sends them.
//!
//! From DevLake's source:
//!
//! * `NotifyExternal(pipelineId)` (`backend/server/services/pipeline.go`) does nothing unless
//!   `NOTIFICATION_ENDPOINT` is set; it reads the pipeline back from the database, looks up its
//!   blueprint's `ProjectName` (`getProjectName`: `""` without a blueprint, an error and no
//!   notification when the blueprint is gone) and sends `PipelineNotificationParam`: Go field
//!   names, Go time encoding, `BeganAt`/`FinishedAt` `null` when unset.
//! * It is called when a pipeline is created (`CreateDbPipeline`, from a goroutine), when the
//!   runner starts it (`RunPipelineInQueue`, before `runPipeline`) and when `runPipeline` ends
//!   it (status computed, row saved). Nothing else notifies: not a re-run request, not the
//!   cancellation of a queued pipeline, not a restart's `markInterruptedPipelineAs`.
//! * `sendNotification` (`pipeline_notification_impl.go`) inserts a `_devlake_notifications`
//!   row (id, type `PipelineStatusChanged`, endpoint, 16-letter nonce from `RandLetterBytes`,
//!   data), signs `data + secret + "<id>-<nonce>"` with SHA-256 (lowercase hex), posts
//!   `data` to `<endpoint>?nouce=<id>-<nonce>&sign=<hex>` with `Content-Type:
//!   application/json` through Go's default HTTP client (no timeout), then stores the
//!   response code and body in the row. No retry, whatever the answer.
//!
//! The simulator captures each notification's body when DevLake would read the row (right after
//! the change), queues it, and one background task posts them in order. Tests wait for them with
//! [`SimHandle::wait_for_notifications`](super::SimHandle::wait_for_notifications).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Weak;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::state::State;
use super::time::go_time;
use super::{lock, Inner};

/// Where DevLake sends notifications and the secret it signs them with (its `.env`
/// `NOTIFICATION_ENDPOINT` and `NOTIFICATION_SECRET`). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct NotificationSettings {
    pub endpoint: String,
    pub secret: String,
}

impl fmt::Debug for NotificationSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotificationSettings")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One `_devlake_notifications` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationRow {
    pub id: u64,
    pub pipeline_id: u64,
    /// The URL posted to, query included.
    pub url: String,
    pub nonce: String,
    /// The JSON body, as sent.
    pub data: String,
    /// The answer's status code; 0 until answered (and when the request failed).
    pub response_code: u16,
    pub response: String,
    /// The request failed without an answer (connection refused, timeout).
    pub error: Option<String>,
    /// Answered or failed: nothing more will happen to it.
    pub settled: bool,
}

/// What `State` keeps while notifications are configured.
#[derive(Debug)]
pub(crate) struct Notifier {
    settings: NotificationSettings,
    outbox: UnboundedSender<u64>,
}

/// How long one post may take before the simulator gives up on it. Go's default client has no
/// timeout; a bound keeps a test whose endpoint never answers from hanging forever.
const POST_TIMEOUT: Duration = Duration::from_secs(300);

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// `RandLetterBytes(16)`: 16 characters of DevLake's alphabet (std's randomly keyed hasher as
/// the random source: unpredictable enough for a simulator).
fn nonce() -> String {
    let state = std::collections::hash_map::RandomState::new();
    (0..16u64)
        .map(|i| {
            let mut h = state.build_hasher();
            h.write_u64(i);
            char::from(LETTERS[(h.finish() % LETTERS.len() as u64) as usize])
        })
        .collect()
}

/// DevLake's `signature`: lowercase hex SHA-256 of `data + secret + nonce`.
pub fn devlake_sign(data: &str, secret: &str, nonce: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(data.as_bytes());
    hasher.update(secret.as_bytes());
    hasher.update(nonce.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl State {
    /// `NotifyExternal(pipelineId)`: queues the notification of the pipeline's current state,
    /// if notifications are configured. Called where DevLake calls it.
    pub(crate) fn notify_external(&mut self, pipeline_id: u64) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let Some(p) = self.pipelines.get(&pipeline_id) else {
            return;
        };
        // getProjectName: no blueprint, no project; a blueprint that is gone stops it.
        let project_name = if p.blueprint_id == 0 {
            String::new()
        } else {
            match self.blueprints.get(&p.blueprint_id) {
                Some(b) => b.project_name.clone(),
                None => return,
            }
        };
        let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map_or(Value::Null, |t| Value::String(go_time(&t)))
        };
        // PipelineNotificationParam, fields in declaration order like encoding/json.
        let data = format!(
            r#"{{"ProjectName":{},"PipelineID":{},"CreatedAt":{},"UpdatedAt":{},"BeganAt":{},"FinishedAt":{},"Status":{}}}"#,
            Value::String(project_name),
            p.id,
            time(Some(p.created_at)),
            time(Some(p.updated_at)),
            time(p.began_at),
            time(p.finished_at),
            Value::String(p.status.to_string()),
        );
        let id = self.notifications.len() as u64 + 1;
        let nonce = nonce();
        let signed = format!("{id}-{nonce}");
        let sign = devlake_sign(&data, &notifier.settings.secret, &signed);
        let url = format!("{}?nouce={signed}&sign={sign}", notifier.settings.endpoint);
        let outbox = notifier.outbox.clone();
        self.notifications.push(NotificationRow {
            id,
            pipeline_id,
            url,
            nonce,
            data,
            response_code: 0,
            response: String::new(),
            error: None,
            settled: false,
        });
        let _ = outbox.send(id);
    }
}

/// Turns notifications on (or off with `None`) for the simulator behind `inner`. On: a
/// background task posts queued rows in order; it needs a Tokio runtime, and ends when
/// notifications are turned off or the simulator goes away.
pub(crate) fn configure(inner: &std::sync::Arc<Inner>, settings: Option<NotificationSettings>) {
    let mut state = lock(&inner.state);
    let Some(settings) = settings else {
        state.notifier = None;
        return;
    };
    let (tx, mut rx) = unbounded_channel::<u64>();
    state.notifier = Some(Notifier {
        settings,
        outbox: tx,
    });
    drop(state);
    let weak: Weak<Inner> = std::sync::Arc::downgrade(inner);
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(POST_TIMEOUT)
            .no_proxy()
            .build()
            .expect("a plain HTTP client builds");
        while let Some(id) = rx.recv().await {
            let Some(inner) = weak.upgrade() else { return };
            let row = lock(&inner.state)
                .notifications
                .get(id as usize - 1)
                .map(|r| (r.url.clone(), r.data.clone()));
            drop(inner);
            let Some((url, data)) = row else { continue };
            let answer = http
                .post(&url)
                .header("content-type", "application/json")
                .body(data)
                .send()
                .await;
            let answer = match answer {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    Ok((code, resp.text().await.unwrap_or_default()))
                }
                Err(e) => Err(e.to_string()),
            };
            let Some(inner) = weak.upgrade() else { return };
            let mut state = lock(&inner.state);
            if let Some(r) = state.notifications.get_mut(id as usize - 1) {
                match answer {
                    Ok((code, body)) => {
                        r.response_code = code;
                        r.response = body;
                    }
                    Err(e) => r.error = Some(e),
                }
                r.settled = true;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_and_nonce_follow_devlake() {
        // sha256("{}" + "s3cret" + "1-abcdefghijklmnop"), computed with Python's hashlib.
        assert_eq!(
            devlake_sign("{}", "s3cret", "1-abcdefghijklmnop"),
            "8695ac80493cd15fb3b5c4339667de5df7112c5c756444b4ac8e930762821331"
        );
        let n = nonce();
        assert_eq!(n.len(), 16);
        assert!(n.bytes().all(|b| LETTERS.contains(&b)));
        assert_ne!(n, nonce());
        assert!(!format!(
            "{:?}",
            NotificationSettings {
                endpoint: "http://x".into(),
                secret: "hush".into()
            }
        )
        .contains("hush"));
    }
}
