//! The body of DevLake's pipeline notification.
//!
//! `NotifyExternal` (`backend/server/services/pipeline.go`) reads the pipeline back from the
//! database and sends `PipelineNotificationParam` (`pipeline_notification.go`) marshalled by Go's
//! `encoding/json` without tags, so the keys are the Go field names:
//!
//! ```json
//! {"ProjectName":"svc-a","PipelineID":42,"CreatedAt":"2026-11-28T10:00:00Z",
//!  "UpdatedAt":"2026-11-28T10:05:00Z","BeganAt":"2026-11-28T10:00:03Z",
//!  "FinishedAt":"2026-11-28T10:05:00Z","Status":"TASK_FAILED"}
//! ```
//!
//! It is sent when a pipeline is created (asynchronously, `CreateDbPipeline`), when the runner
//! starts it (`RunPipelineInQueue`, re-runs included) and when it ends (`runPipeline`), each time
//! with the state the row has then. `ProjectName` is `""` for a pipeline without a blueprint. The
//! times are Go `time.Time` (RFC 3339, any offset); `BeganAt` and `FinishedAt` may be `null`.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::devlake::models::Pipeline;

/// One notification, as DevLake sent it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Notification {
    pub project_name: String,
    #[serde(rename = "PipelineID")]
    pub pipeline_id: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[serde(default)]
    pub began_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    pub status: String,
}

/// Why a body is not a notification (answered 400).
#[derive(Debug, thiserror::Error)]
#[error("not a DevLake pipeline notification: {0}")]
pub struct MalformedNotification(String);

impl Notification {
    /// Parses a body. Keys DevLake may add later are ignored.
    pub fn parse(body: &[u8]) -> Result<Self, MalformedNotification> {
        let n: Notification =
            serde_json::from_slice(body).map_err(|e| MalformedNotification(e.to_string()))?;
        if n.pipeline_id == 0 {
            return Err(MalformedNotification("PipelineID is 0".into()));
        }
        if n.status.trim().is_empty() {
            return Err(MalformedNotification("Status is empty".into()));
        }
        Ok(n)
    }

    /// The project the pipeline belongs to; `None` for a pipeline without one.
    pub fn project(&self) -> Option<&str> {
        let name = self.project_name.trim();
        (!name.is_empty()).then_some(self.project_name.as_str())
    }

    /// The pipeline as `GET /pipelines/{id}` would show it at that moment, as far as the
    /// notification says: no blueprint id (`0`, unknown), message or error name.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline {
            id: self.pipeline_id,
            name: String::new(),
            blueprint_id: 0,
            status: self.status.clone(),
            created_at: Some(self.created_at),
            began_at: self.began_at,
            finished_at: self.finished_at,
            updated_at: Some(self.updated_at),
            message: String::new(),
            error_name: String::new(),
            spent_seconds: None,
            labels: Vec::new(),
            full_sync: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_field_names_and_time_formats() {
        let n = Notification::parse(
            br#"{"ProjectName":"svc-a","PipelineID":42,
                 "CreatedAt":"2026-11-28T17:00:00.123456789+07:00",
                 "UpdatedAt":"2026-11-28T10:05:00Z","BeganAt":null,
                 "FinishedAt":"2026-11-28T10:05:00Z","Status":"TASK_FAILED","Extra":1}"#,
        )
        .unwrap();
        assert_eq!(n.project(), Some("svc-a"));
        assert_eq!(n.pipeline_id, 42);
        assert_eq!(
            n.created_at,
            "2026-11-28T10:00:00.123456789Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
        assert_eq!(n.began_at, None);
        let p = n.pipeline();
        assert_eq!((p.id, p.blueprint_id), (42, 0));
        assert_eq!(p.updated_at, Some(n.updated_at));
    }

    #[test]
    fn ad_hoc_pipelines_have_no_project_and_garbage_is_refused() {
        let body = br#"{"ProjectName":"  ","PipelineID":7,"CreatedAt":"2026-11-28T10:00:00Z",
            "UpdatedAt":"2026-11-28T10:00:00Z","BeganAt":null,"FinishedAt":null,
            "Status":"TASK_CREATED"}"#;
        assert_eq!(Notification::parse(body).unwrap().project(), None);
        for bad in [
            &b"not json"[..],
            br#"{"projectName":"a","pipelineId":1}"#,
            br#"{"ProjectName":"a","PipelineID":0,"CreatedAt":"2026-11-28T10:00:00Z","UpdatedAt":"2026-11-28T10:00:00Z","Status":"TASK_CREATED"}"#,
            br#"{"ProjectName":"a","PipelineID":1,"CreatedAt":"yesterday","UpdatedAt":"2026-11-28T10:00:00Z","Status":"TASK_CREATED"}"#,
            br#"{"ProjectName":"a","PipelineID":1,"CreatedAt":"2026-11-28T10:00:00Z","UpdatedAt":"2026-11-28T10:00:00Z","Status":""}"#,
        ] {
            assert!(Notification::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
