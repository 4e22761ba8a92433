//! Phase 1 of a run, *observe*: the listings that find what changed since the cursor
//! (concurrently), then the look-ups of watched pipelines and open failures no listing showed
//! (the module doc gives each call and why).

use futures::{StreamExt, TryStreamExt};

use crate::deadline::Deadline;
use crate::devlake::models::{status, Pipeline, PipelineQuery};
use crate::devlake::DevLakeError;
use crate::job::Stop;
use crate::store::MonitorCursor;

use super::plan::{Basis, Lookups, Observations};
use super::run::{deadline_issue, Monitor};
use super::summary::RunIssue;

/// Rows per page of each counted status's listing: the first page is the re-run safety net
/// (a re-run that ended again since the last run is most likely a recent pipeline).
pub const RECENT_FAILURES_PAGE: u32 = 100;
/// Pages of each counted status read at most to reach the oldest open failure; older open
/// failures are looked up a few per run instead.
pub const RECHECK_PAGES: u32 = 5;
/// Concurrent `GET /pipelines/{id}` and `GET /blueprints/{id}` (the client caps it further).
const LOOKUP_CONCURRENCY: usize = 8;

/// The issue of a run whose newest-first listing the deadline cut short: nothing below where it
/// stopped was seen, and the next run lists from the same start again.
pub(super) fn listing_cut_short(basis: Basis<'_>, obs: &Observations) -> RunIssue {
    RunIssue {
        project: None,
        pipeline_id: obs.listed.iter().map(|p| p.id).min(),
        blueprint_id: None,
        message: match basis {
            Basis::Cursor(_) => {
                "the Lambda deadline came first: the pipeline listing \
                                 did not reach the cursor; the next run starts again \
                                 from the same cursor"
            }
            Basis::Lookback { .. } => {
                "the Lambda deadline came first: the pipeline \
                                       listing did not reach the look-back floor; the \
                                       next run looks back again from the same start"
            }
        }
        .to_string(),
    }
}

impl Monitor<'_> {
    /// The listings of a run, fetched concurrently: the unfiltered list down to the cursor, the
    /// unfinished pipelines (pending, re-run, running), and each counted status down to the
    /// oldest open failure.
    pub(super) async fn observe(
        &self,
        basis: Basis<'_>,
        loaded: Option<&MonitorCursor>,
        deadline: Deadline,
    ) -> Result<Observations, DevLakeError> {
        let listed = self.list_new(basis, deadline);
        let unfinished = futures::future::try_join_all(
            [
                PipelineQuery {
                    pending: true,
                    ..Default::default()
                },
                PipelineQuery {
                    status: Some(status::RERUN.to_string()),
                    ..Default::default()
                },
                PipelineQuery {
                    status: Some(status::RUNNING.to_string()),
                    ..Default::default()
                },
            ]
            .into_iter()
            .map(|query| async move {
                self.devlake.pipelines(&query).try_collect::<Vec<_>>().await
            }),
        );
        let oldest_open = loaded
            .and_then(|c| c.open_failures.iter().map(|o| o.pipeline_id).min())
            .unwrap_or(u64::MAX);
        let recent = futures::future::try_join_all(
            self.settings
                .failure_statuses
                .iter()
                .map(|status| self.list_status_down_to(status, oldest_open, deadline)),
        );
        let ((listed, listed_complete), unfinished, recent) =
            futures::try_join!(listed, unfinished, recent)?;
        let recent_covers_from = recent.iter().map(|(_, from)| *from).max().unwrap_or(0);
        Ok(Observations {
            listed,
            listed_complete,
            pending: unfinished.into_iter().flatten().collect(),
            recent: recent.into_iter().flat_map(|(rows, _)| rows).collect(),
            recent_covers_from,
        })
    }

    /// `GET /pipelines?status=S` newest first: the first page always (a re-run that ended again
    /// since the last run is likely a recent one), then on until a page reaches `down_to` (the
    /// oldest open failure) or [`RECHECK_PAGES`] pages were read. Returns the rows and the
    /// lowest id from which the listing is complete (0: all of it).
    async fn list_status_down_to(
        &self,
        status: &str,
        down_to: u64,
        deadline: Deadline,
    ) -> Result<(Vec<Pipeline>, u64), DevLakeError> {
        let query = PipelineQuery {
            status: Some(status.to_string()),
            ..Default::default()
        };
        let size = RECENT_FAILURES_PAGE;
        let mut rows: Vec<Pipeline> = Vec::new();
        let mut page = 1u32;
        let mut covered_from = 0;
        loop {
            let answer = match self.devlake.pipelines_page(&query, page, size).await {
                Ok(answer) => answer,
                // Cut off at the deadline after the first page: what was read stands.
                Err(DevLakeError::Deadline { .. }) if page > 1 => return Ok((rows, covered_from)),
                Err(e) => return Err(e),
            };
            let n = answer.pipelines.len();
            let lowest = answer.pipelines.iter().map(|p| p.id).min();
            rows.extend(answer.pipelines);
            let ended = n < size as usize || rows.len() as i64 >= answer.count;
            if ended {
                return Ok((rows, 0));
            }
            let lowest = lowest.unwrap_or(0);
            if lowest <= down_to || page >= RECHECK_PAGES || deadline.passed() {
                return Ok((rows, lowest));
            }
            covered_from = lowest;
            page += 1;
        }
    }

    /// `GET /pipelines` newest first until a page reaches the cursor (or, looking back, a page
    /// holds pipelines created before the window minus `STUCK_AFTER_HOURS`: anything older that
    /// finished inside the window ran longer than "stuck" and is watched through the pending
    /// list). The whole last page is kept: its older rows are free evidence for watched ids.
    async fn list_new(
        &self,
        basis: Basis<'_>,
        deadline: Deadline,
    ) -> Result<(Vec<Pipeline>, bool), DevLakeError> {
        let size = self.devlake.page_size();
        let floor = match basis {
            Basis::Lookback { window_start } => Some(window_start - self.settings.stuck_after),
            Basis::Cursor(_) => None,
        };
        let mut rows: Vec<Pipeline> = Vec::new();
        let mut page = 1u32;
        loop {
            if page > 1 && deadline.passed() {
                return Ok((rows, false));
            }
            let answer = match self
                .devlake
                .pipelines_page(&PipelineQuery::default(), page, size)
                .await
            {
                Ok(answer) => answer,
                // Cut off at the deadline after the first page: a listing cut short.
                Err(DevLakeError::Deadline { .. }) if page > 1 => return Ok((rows, false)),
                Err(e) => return Err(e),
            };
            let n = answer.pipelines.len();
            let reached = answer.pipelines.iter().any(|p| match (basis, floor) {
                (Basis::Cursor(c), _) => p.id <= c.max_pipeline_id,
                (_, Some(floor)) => p.created_at.is_some_and(|t| t < floor),
                _ => false,
            });
            rows.extend(answer.pipelines);
            if reached || n < size as usize || rows.len() as i64 >= answer.count {
                return Ok((rows, true));
            }
            page += 1;
        }
    }

    /// `GET /pipelines/{id}` for watched pipelines no listing showed.
    pub(super) async fn look_up(
        &self,
        ids: &[u64],
        deadline: Deadline,
        errors: &mut Vec<RunIssue>,
    ) -> Result<Lookups, Stop> {
        let mut lookups = Lookups::default();
        if ids.is_empty() {
            return Ok(lookups);
        }
        let results = fetch_each(ids, deadline, |id| self.devlake.pipeline(id)).await;
        let mut postponed = 0usize;
        for (id, result) in results {
            match result {
                Some(Ok(p)) => lookups.found.push(p),
                Some(Err(e)) if e.is_not_found() => {
                    tracing::info!(pipeline_id = id, "watched pipeline no longer exists");
                    lookups.gone.push(id);
                }
                Some(Err(e)) if e.is_fatal() => return Err(e.into()),
                Some(Err(e)) => {
                    tracing::warn!(pipeline_id = id, error = %e, "watched pipeline not looked up; kept for the next run");
                    errors.push(RunIssue {
                        project: None,
                        pipeline_id: Some(id),
                        blueprint_id: None,
                        message: e.to_string(),
                    });
                    lookups.unknown.push(id);
                }
                None => {
                    postponed += 1;
                    lookups.unknown.push(id);
                }
            }
        }
        if postponed > 0 {
            errors.push(deadline_issue(format!(
                "{postponed} watched pipeline(s) not looked up; kept for the next run"
            )));
        }
        Ok(lookups)
    }
}

/// `fetch` for each id, `LOOKUP_CONCURRENCY` at a time. Ids whose turn comes after the deadline
/// get `None` (looked at again next run).
pub(super) async fn fetch_each<T, F, Fut>(
    ids: &[u64],
    deadline: Deadline,
    fetch: F,
) -> Vec<(u64, Option<Result<T, DevLakeError>>)>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = Result<T, DevLakeError>>,
{
    futures::stream::iter(ids.iter().copied())
        .map(|id| {
            let call = (!deadline.passed()).then(|| fetch(id));
            async move {
                match call {
                    Some(call) => (id, Some(call.await)),
                    None => (id, None),
                }
            }
        })
        .buffer_unordered(LOOKUP_CONCURRENCY)
        .collect()
        .await
}
