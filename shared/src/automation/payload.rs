//! The automation's invocation payloads, parsed strictly before any DevLake call: unknown
//! fields and wrong types are refused with the field named exactly as sent. The envelope forms
//! (`{}`/`null`, the scheduler's `{"scheduledTime": "..."}`, an EventBridge rule's "Scheduled
//! Event") are read as for the monitor ([`crate::job::envelope`]); the manual forms are the
//! automation's own [`Form`]s:
//!
//! | payload | meaning |
//! | --- | --- |
//! | `{"scheduledTime": "2026-11-28T11:00:00Z"}` | EventBridge Scheduler; the scheduled time is the run's `now`, so a retried delivery computes the same Saturday |
//! | EventBridge rule "Scheduled Event" | its `time` is `now` |
//! | `{}` (or `null`) | a full run with `now` = the invocation time |
//! | `{"dryRun": true, "plugins": ["github"], "connections": ["github/1"], "steps": [...], "now": "..."}` | manual run; every field optional. `dryRun` can turn a dry run on, never off (`DRY_RUN=true` wins). `steps` ⊆ `discover`, `sync`, `scopeConfigs`, `projects`, `timeAfter`, `trigger`; discovery always happens (it only reads) |
//! | `{"action": "rerun", "projects": ["github/acme/api"], "fullSync": false}` | trigger these projects now (paced, not capped), optionally with a full sync |
//! | `{"action": "rerun", "failed": true}` | trigger every managed project whose last pipeline failed (paced and capped) |
//! | `{"action": "adopt", "projects": ["legacy-api"], "dryRun": true, "now": "..."}` | make these unmanaged projects managed (`"all": true` instead of `projects`: every adoptable one); `scheduledTime` is accepted as `now` |
//!
//! Times are bounded by the invocation's clock ([`TimeBounds::AUTOMATION`]): more than 15 minutes
//! ahead, or more than 2 days behind, is refused naming the field (`scheduledTime`, `now`,
//! `time`). `"allowPastTime": true` (run, rerun and adopt forms) lifts the past bound for a deliberate
//! backfill; nothing lifts the future bound.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::devlake::models::SUPPORTED_PLUGINS;
use crate::job::envelope::{self, kind, Envelope, Form, Manual};
use crate::time_rules::TimeBounds;

pub use crate::job::{PayloadError, Source};

fn err(field: &str, problem: impl Into<String>) -> PayloadError {
    PayloadError::new(field, problem)
}

/// The steps of a run, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    Discover,
    Sync,
    ScopeConfigs,
    Projects,
    TimeAfter,
    Trigger,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Discover,
        Step::Sync,
        Step::ScopeConfigs,
        Step::Projects,
        Step::TimeAfter,
        Step::Trigger,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Discover => "discover",
            Step::Sync => "sync",
            Step::ScopeConfigs => "scopeConfigs",
            Step::Projects => "projects",
            Step::TimeAfter => "timeAfter",
            Step::Trigger => "trigger",
        }
    }

    fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == s)
    }
}

/// A `{plugin}/{connectionId}` selector.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionRef {
    pub plugin: String,
    pub connection_id: u64,
}

impl std::fmt::Display for ConnectionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.plugin, self.connection_id)
    }
}

/// A regular run (scheduled or manual).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub source: Source,
    /// The run's `now`: the scheduled time, the rule event's `time` or the manual `now`.
    pub now: Option<DateTime<Utc>>,
    pub dry_run: Option<bool>,
    pub plugins: Option<Vec<String>>,
    pub connections: Option<Vec<ConnectionRef>>,
    /// `None` = every step.
    pub steps: Option<BTreeSet<Step>>,
}

impl RunRequest {
    pub fn runs(&self, step: Step) -> bool {
        self.steps.as_ref().is_none_or(|s| s.contains(&step))
    }
}

/// What a rerun request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RerunTarget {
    /// Project names, as given.
    Projects(Vec<String>),
    /// Every managed project whose last pipeline failed.
    Failed,
}

/// `{"action": "rerun", ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RerunRequest {
    pub target: RerunTarget,
    pub full_sync: bool,
    pub dry_run: Option<bool>,
    pub now: Option<DateTime<Utc>>,
}

/// `{"action": "adopt", ...}`: `projects` = None means every adoptable project (`all: true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptRequest {
    pub projects: Option<Vec<String>>,
    pub dry_run: Option<bool>,
    pub now: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Run(RunRequest),
    Rerun(RerunRequest),
    Adopt(AdoptRequest),
}

/// A regular run: the envelope forms, or the manual selection of plugins, connections, steps.
pub const RUN_FORM: Form = Form {
    what: "a run request",
    fields: &[
        "scheduledTime",
        "now",
        "allowPastTime",
        "dryRun",
        "plugins",
        "connections",
        "steps",
    ],
    times: &["scheduledTime", "now"],
};
/// `{"action": "rerun", ...}`.
pub const RERUN_FORM: Form = Form {
    what: "a rerun request",
    fields: &[
        "action",
        "projects",
        "failed",
        "fullSync",
        "dryRun",
        "now",
        "allowPastTime",
    ],
    times: &["now"],
};
/// `{"action": "adopt", ...}`.
pub const ADOPT_FORM: Form = Form {
    what: "an adopt request",
    fields: &[
        "action",
        "projects",
        "all",
        "dryRun",
        "now",
        "scheduledTime",
        "allowPastTime",
    ],
    times: &["now", "scheduledTime"],
};

/// Parses any accepted payload. `clock` is the invocation's clock reading, against which
/// payload times are bounded.
pub fn parse(payload: &Value, clock: DateTime<Utc>) -> Result<Request, PayloadError> {
    let object = match envelope::open(payload, clock, TimeBounds::AUTOMATION)? {
        Envelope::Rule { time } => {
            return Ok(Request::Run(RunRequest {
                source: Source::Rule,
                now: Some(time),
                dry_run: None,
                plugins: None,
                connections: None,
                steps: None,
            }))
        }
        Envelope::Object(object) => object,
    };
    match object.get("action") {
        None => parse_run(object.form(&RUN_FORM)?),
        Some(Value::String(a)) if a == "rerun" => parse_rerun(object.form(&RERUN_FORM)?),
        Some(Value::String(a)) if a == "adopt" => parse_adopt(object.form(&ADOPT_FORM)?),
        Some(Value::String(a)) => Err(err(
            "action",
            format!("unknown action {a:?}; the actions are \"rerun\" and \"adopt\""),
        )),
        Some(other) => Err(err(
            "action",
            format!("expected a string, got {}", kind(other)),
        )),
    }
}

fn parse_run(m: Manual<'_>) -> Result<Request, PayloadError> {
    let scheduled = m.scheduled_time()?;
    let manual_now = m.time("now")?;
    if scheduled.is_some() && manual_now.is_some() {
        return Err(err("now", "give either scheduledTime or now, not both"));
    }
    let plugins = m
        .strings("plugins")?
        .map(|list| {
            list.into_iter()
                .enumerate()
                .map(|(i, p)| {
                    if SUPPORTED_PLUGINS.contains(&p.as_str()) {
                        Ok(p)
                    } else {
                        Err(err(
                            &format!("plugins[{i}]"),
                            format!(
                                "unknown plugin {p:?}; supported: {}",
                                SUPPORTED_PLUGINS.join(", ")
                            ),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let connections = m
        .strings("connections")?
        .map(|list| {
            list.into_iter()
                .enumerate()
                .map(|(i, c)| connection_ref(&c, &format!("connections[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let steps = m
        .strings("steps")?
        .map(|list| {
            list.into_iter()
                .enumerate()
                .map(|(i, s)| {
                    Step::parse(&s).ok_or_else(|| {
                        err(
                            &format!("steps[{i}]"),
                            format!(
                                "unknown step {s:?}; steps are {}",
                                Step::ALL.map(Step::as_str).join(", ")
                            ),
                        )
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .transpose()?;
    Ok(Request::Run(RunRequest {
        source: m.source(),
        now: scheduled.or(manual_now),
        dry_run: m.boolean("dryRun")?,
        plugins,
        connections,
        steps,
    }))
}

fn parse_rerun(m: Manual<'_>) -> Result<Request, PayloadError> {
    let projects = project_names(&m)?;
    let target = match (projects, m.boolean("failed")?) {
        (Some(_), Some(true)) => {
            return Err(err(
                "failed",
                "give either projects or failed: true, not both",
            ))
        }
        (Some(p), _) => RerunTarget::Projects(p),
        (None, Some(true)) => RerunTarget::Failed,
        (None, Some(false)) => {
            return Err(err(
                "failed",
                "false selects nothing; give projects or failed: true",
            ))
        }
        (None, None) => {
            return Err(err(
                "projects",
                "a rerun needs projects: [...] or failed: true",
            ))
        }
    };
    Ok(Request::Rerun(RerunRequest {
        target,
        full_sync: m.boolean("fullSync")?.unwrap_or(false),
        dry_run: m.boolean("dryRun")?,
        now: m.time("now")?,
    }))
}

fn parse_adopt(m: Manual<'_>) -> Result<Request, PayloadError> {
    let projects = project_names(&m)?;
    let projects = match (projects, m.boolean("all")?) {
        (Some(_), Some(true)) => {
            return Err(err("all", "give either projects or all: true, not both"))
        }
        (Some(p), _) => Some(p),
        (None, Some(true)) => None,
        (None, Some(false)) => {
            return Err(err(
                "all",
                "false selects nothing; give projects or all: true",
            ))
        }
        (None, None) => {
            return Err(err(
                "projects",
                "an adopt request needs projects: [...] or all: true",
            ))
        }
    };
    let scheduled = m.scheduled_time()?;
    let now = m.time("now")?;
    Ok(Request::Adopt(AdoptRequest {
        projects,
        dry_run: m.boolean("dryRun")?,
        now: scheduled.or(now),
    }))
}

/// `projects` (rerun and adopt forms): a non-empty list of non-blank names, if given.
fn project_names(m: &Manual<'_>) -> Result<Option<Vec<String>>, PayloadError> {
    m.strings("projects")?
        .map(|list| {
            if list.is_empty() {
                return Err(err("projects", "names no project"));
            }
            if let Some(i) = list.iter().position(|p| p.trim().is_empty()) {
                return Err(err(&format!("projects[{i}]"), "is empty"));
            }
            Ok(list)
        })
        .transpose()
}

fn connection_ref(s: &str, field: &str) -> Result<ConnectionRef, PayloadError> {
    let bad = || {
        err(
            field,
            format!("{s:?} is not of the form <plugin>/<connectionId>, e.g. \"github/1\""),
        )
    };
    let (plugin, id) = s.split_once('/').ok_or_else(bad)?;
    let connection_id: u64 = id.parse().map_err(|_| bad())?;
    if !SUPPORTED_PLUGINS.contains(&plugin) {
        return Err(err(
            field,
            format!(
                "unknown plugin {plugin:?}; supported: {}",
                SUPPORTED_PLUGINS.join(", ")
            ),
        ));
    }
    Ok(ConnectionRef {
        plugin: plugin.to_string(),
        connection_id,
    })
}

#[cfg(test)]
mod tests;
