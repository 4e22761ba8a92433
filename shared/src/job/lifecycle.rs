//! One run of a scheduled job, from the parsed request to what Lambda answers: the run lease,
//! the deadline-bound DevLake client, timing and call counts, the deadline rule, the closing log
//! line, the run record, the CloudWatch datums and the lease's release. The job plugs in its
//! body and the shape of its summary ([`ScheduledJob`]); everything else happens here, the same
//! way for both jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::cloudwatch::{Datum, MetricsSink};
use crate::deadline::Deadline;
use crate::devlake::{CallCounts, DevLakeClient};
use crate::store::{Job, LeaseHolder, RunLog, RunRecord, StoreError};

use super::error::{Cause, Stop};
use super::summary::{FailureReport, JobSummary, RunStatus};

/// What differs between the scheduled jobs in how a run is handled, as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSpec {
    /// The run record's key and the job's name in log lines.
    pub job: Job,
    /// Whether runs send `DevLakeUp` (the monitor's: the `DevLakeDown` alarm watches it).
    pub devlake_up_datum: bool,
}

/// How a job's body ended.
#[derive(Debug)]
pub enum Ran<S> {
    Finished(S),
    /// Stopped by an error no later call could get past; `partial` is the summary of what it
    /// had done, when the job keeps one.
    Stopped {
        stop: Stop,
        partial: Option<S>,
    },
}

impl<S> From<Result<S, Stop>> for Ran<S> {
    fn from(result: Result<S, Stop>) -> Self {
        match result {
            Ok(summary) => Ran::Finished(summary),
            Err(stop) => Ran::Stopped {
                stop,
                partial: None,
            },
        }
    }
}

/// A job as the lifecycle runs it: one value per invocation, holding the parsed request.
pub(crate) trait ScheduledJob {
    type Summary: JobSummary;

    /// The run's work, with the DevLake client bound to the run's deadline.
    async fn body(&self, devlake: &DevLakeClient) -> Ran<Self::Summary>;

    /// The summary of a run whose DevLake call the deadline cut off at a step every later step
    /// needs: partial, saying so; the next run starts from consistent state (every write is
    /// idempotent and the monitor's cursor is saved last).
    fn cut_short(&self, partial: Option<Self::Summary>, stop: &Stop) -> Self::Summary;

    /// What the job keeps in the table besides the run record, written right after it (for a
    /// recorded run that is not dry), from the summary as far as the run got. A failure is the
    /// job's to log; it never fails the run.
    async fn record_more(
        &self,
        _summary: &Self::Summary,
        _log: &dyn RunLog,
        _finished_at: DateTime<Utc>,
    ) {
    }
}

/// The facts of one invocation the lifecycle needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Invocation {
    /// The invocation's clock reading (not the scheduled time): a run record's `finishedAt` is
    /// this plus the run's duration, so a late or replayed delivery does not look older.
    pub started_at: DateTime<Utc>,
    pub deadline: Deadline,
    /// Writes nothing anywhere: no lease, no run record, no metric.
    pub dry_run: bool,
    /// A run of the job itself: recorded in the table and counted in the run-level health
    /// series. `false` for a manual action (the automation's `rerun` and `adopt`), which only
    /// answers its caller and counts its errors.
    pub recorded: bool,
}

/// Why the run lease was not taken; nothing was called or written.
#[derive(Debug)]
pub(crate) enum LeaseRefused {
    /// Another run holds it.
    Held(LeaseHolder),
    /// The table failed; without the lease two runs could act at once.
    Failed(StoreError),
}

/// The run lease this run holds, released when it ends.
#[derive(Debug)]
pub(crate) struct Lease {
    holder: String,
}

/// How long a lease lasts when the run has no deadline (a local run without one).
const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);

/// The ports the lifecycle talks through.
#[derive(Clone, Copy)]
pub(crate) struct Lifecycle<'a> {
    pub spec: JobSpec,
    pub devlake: &'a DevLakeClient,
    /// Where runs are recorded (and the lease kept); `None` keeps neither.
    pub run_log: Option<&'a dyn RunLog>,
    /// Where datums go; `None` sends none.
    pub sink: Option<&'a dyn MetricsSink>,
}

impl Lifecycle<'_> {
    fn name(&self) -> &'static str {
        self.spec.job.as_str()
    }

    /// Takes the job's run lease for a run that writes, until the Lambda timeout (the deadline
    /// plus `margin`) and a minute more, so an overlapping manual run or a duplicate delivery
    /// cannot act at the same time. A dry run, or a job without a table, takes none.
    pub async fn take_lease(
        &self,
        inv: &Invocation,
        margin: Duration,
    ) -> Result<Option<Lease>, LeaseRefused> {
        let Some(log) = self.run_log.filter(|_| !inv.dry_run) else {
            return Ok(None);
        };
        let holder = run_id(inv.started_at);
        let until = inv.started_at
            + chrono::Duration::from_std(inv.deadline.left().unwrap_or(DEFAULT_LEASE) + margin)
                .unwrap_or(chrono::Duration::minutes(15))
            + chrono::Duration::minutes(1);
        match log
            .acquire_lease(self.spec.job, &holder, inv.started_at, until)
            .await
        {
            Ok(Ok(())) => {
                tracing::info!(run_id = %holder, lease_until = %until, "run lease taken");
                Ok(Some(Lease { holder }))
            }
            Ok(Err(held)) => {
                tracing::warn!(holder = %held.holder, until = %held.until, "another {} run holds the run lease; refusing", self.name());
                Err(LeaseRefused::Held(held))
            }
            Err(e) => Err(LeaseRefused::Failed(e)),
        }
    }

    /// Runs `job` and reports it: the closing log line, the run record (a recorded run that is
    /// not dry), the datums (any run that is not dry), then the lease's release. A run the
    /// deadline cut short answers its partial summary; one that stopped answers the error.
    pub async fn run<J: ScheduledJob>(
        &self,
        job: &J,
        inv: &Invocation,
        lease: Option<Lease>,
    ) -> Result<J::Summary, Stop> {
        let clock = Instant::now();
        let calls_before = self.devlake.calls();
        // The run's DevLake calls start no retry wait that would end past the deadline.
        let devlake = self.devlake.with_deadline(inv.deadline);
        let ran = match job.body(&devlake).await {
            Ran::Stopped { stop, partial } if stop.is_deadline() => {
                Ran::Finished(job.cut_short(partial, &stop))
            }
            other => other,
        };
        let duration_ms = clock.elapsed().as_millis() as u64;
        let finished_at = inv.started_at + chrono::Duration::milliseconds(duration_ms as i64);
        let after = self.devlake.calls();
        let calls = CallCounts {
            reads: after.reads.saturating_sub(calls_before.reads),
            writes: after.writes.saturating_sub(calls_before.writes),
        };
        let (summary, stop) = match ran {
            Ran::Finished(summary) => (Some(summary), None),
            Ran::Stopped { stop, partial } => (partial, Some(stop)),
        };
        let summary = summary.map(|mut s| {
            s.set_figures(calls, duration_ms);
            s
        });
        let recorded = summary.as_ref().map(JobSummary::recorded);
        match (&stop, &summary, &recorded) {
            (None, Some(s), Some(recorded)) => s.log_finished(recorded),
            _ => self.log_failed(stop.as_ref(), recorded.as_ref(), calls, duration_ms),
        }
        let success = stop.is_none()
            && summary
                .as_ref()
                .is_some_and(|s| s.status() == RunStatus::Ok);
        let devlake_up = stop
            .as_ref()
            .map_or(Some(true), |s| s.devlake_up(calls.total()));

        if !inv.dry_run {
            if let (true, Some(log)) = (inv.recorded, self.run_log) {
                let report = match &stop {
                    None => recorded.unwrap_or_default(),
                    Some(stop) => serde_json::to_value(FailureReport {
                        status: "failed",
                        error_type: Cause::from(stop).error_type().as_str(),
                        error: stop.to_string(),
                        devlake_calls: calls,
                        duration_ms,
                        partial: recorded,
                    })
                    .unwrap_or_default(),
                };
                let run = RunRecord {
                    job: self.spec.job,
                    finished_at,
                    success,
                    devlake_up,
                    duration_ms,
                    summary: report,
                };
                if let Err(e) = log.record_run(&run).await {
                    tracing::warn!(error = %e, "could not record the {} run", self.name());
                }
                if let Some(summary) = &summary {
                    job.record_more(summary, log, finished_at).await;
                }
            }
            let datums = self.datums(
                inv,
                summary.as_ref(),
                stop.is_some(),
                success,
                devlake_up,
                duration_ms,
            );
            if let Some(sink) = self.sink {
                if let Err(e) = sink.emit(&datums).await {
                    tracing::warn!(error = %e, "could not emit CloudWatch metrics; the run is not affected");
                }
            }
        }

        if let (Some(lease), Some(log)) = (lease, self.run_log) {
            if let Err(e) = log
                .release_lease(self.spec.job, &lease.holder, finished_at)
                .await
            {
                // It lapses by itself at its `until`.
                tracing::warn!(error = %e, "could not release the run lease");
            }
        }

        match (stop, summary) {
            (None, Some(summary)) => Ok(summary),
            (Some(stop), _) => Err(stop),
            (None, None) => unreachable!("a finished run has a summary"),
        }
    }

    fn log_failed(
        &self,
        stop: Option<&Stop>,
        partial: Option<&serde_json::Value>,
        calls: CallCounts,
        duration_ms: u64,
    ) {
        let Some(stop) = stop else { return };
        tracing::error!(
            error = %stop,
            error_type = Cause::from(stop).error_type().as_str(),
            retryable = Cause::from(stop).is_retryable(),
            devlake_reads = calls.reads,
            devlake_writes = calls.writes,
            duration_ms,
            summary = %partial.cloned().unwrap_or_default(),
            "{} run failed",
            self.name()
        );
    }

    /// The run's CloudWatch datums (the sink adds `Function=<job>`): `RunSuccess` and
    /// `RunDurationMs` for a recorded run, `Errors` (item errors, plus one for a run that
    /// stopped), the monitor's `DevLakeUp` when known, then the job's own series.
    fn datums<S: JobSummary>(
        &self,
        inv: &Invocation,
        summary: Option<&S>,
        stopped: bool,
        success: bool,
        devlake_up: Option<bool>,
        duration_ms: u64,
    ) -> Vec<Datum> {
        let mut datums = Vec::new();
        if inv.recorded {
            datums.push(Datum::run_success(success));
            datums.push(Datum::run_duration_ms(duration_ms));
        }
        datums.push(Datum::errors(
            summary.map_or(0, JobSummary::item_errors) + u64::from(stopped),
        ));
        if let (true, Some(up)) = (self.spec.devlake_up_datum, devlake_up) {
            datums.push(Datum::flag("DevLakeUp", up));
        }
        if let Some(s) = summary {
            datums.extend(s.datums());
        }
        datums
    }
}

/// A run's id for its lease: the start time and 64 random bits.
fn run_id(started_at: DateTime<Utc>) -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{}-{random:016x}", started_at.timestamp_millis())
}

#[cfg(test)]
mod tests;
