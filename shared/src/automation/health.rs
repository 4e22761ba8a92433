//! Connection health: every run tests each connection it discovers
//! (`POST /plugins/{plugin}/connections/{id}/test`, DevLake asking the source tool), and the
//! projects wired to a connection that is down are not triggered in that run: their pipelines
//! would only fail against the same refusal, adding noise to the failure alerts and holding
//! DevLake's one-pipeline-at-a-time queue.
//!
//! A run that tested every connection of every configured plugin (no `plugins`/`connections`
//! filter, nothing left to the deadline, a verdict for each) replaces the stored health
//! (`CONNECTION`/`HEALTH`), which the metrics page shows as `devlake_connection_up`; any other run
//! reports what it tested in its summary and leaves the stored health alone, since it cannot
//! tell about the connections it did not test.

use std::collections::HashSet;

use futures::StreamExt;

use crate::devlake::models::Connection;
use crate::devlake::{ConnectionTest, DevLakeError};
use crate::store::ConnectionHealth;

use super::summary::{At, Report};
use super::trigger::{self, Candidate};
use super::{Ctx, Fatal};

/// Tests at once per plugin (the client's `DEVLAKE_CONCURRENCY` caps it further). A test of an
/// unreachable tool waits for DevLake's own dial timeout (10 s), so they are not sent in turn.
const TEST_CONCURRENCY: usize = 8;

/// Tests `connections` of `plugin` and records each verdict in `report` (a down connection with
/// DevLake's message, in the summary and the log). A connection DevLake gave no verdict for is
/// an error item; it is not held back. Stops the run only on what stops every call (428, the API
/// key refused, an untrusted certificate).
pub(crate) async fn test_connections(
    ctx: &Ctx<'_>,
    plugin: &str,
    connections: &[Connection],
    report: &mut Report,
) -> Result<(), Fatal> {
    // Futures of a named `async fn`, not closures returning async blocks: those make the run's
    // future lose `Send` for every lifetime (a higher-ranked bound the compiler cannot prove).
    let mut tests = Vec::with_capacity(connections.len());
    for conn in connections {
        tests.push(test_one(ctx, plugin, conn));
    }
    let results: Vec<_> = futures::stream::iter(tests)
        .buffered(TEST_CONCURRENCY)
        .collect()
        .await;
    for (conn, result) in results {
        let at = At::connection(plugin, conn.id);
        match result {
            Some(Ok(test)) => {
                report.counts(Some(plugin)).connections_tested += 1;
                if test.up {
                    tracing::info!(plugin, connection_id = conn.id, connection = %conn.name, "connection test passed");
                } else {
                    report.counts(Some(plugin)).connections_down += 1;
                    tracing::warn!(
                        plugin,
                        connection_id = conn.id,
                        connection = %conn.name,
                        status = test.status,
                        error = %test.message,
                        "connection down: DevLake's test failed; its projects are not triggered this run"
                    );
                }
                report.connections.push(ConnectionHealth {
                    plugin: plugin.to_string(),
                    connection_id: conn.id,
                    connection_name: conn.name.clone(),
                    up: test.up,
                    status: test.status,
                    message: test.message,
                });
            }
            Some(Err(e)) if is_test_route_refused(&e) => {
                report.connections_untested += 1;
                report.error_message(
                    "discover",
                    &at,
                    format!(
                        "connection not tested: the API key may not call the test route ({e}); \
                         allow /plugins/.*/connections/.*/test in its path pattern"
                    ),
                    false,
                );
            }
            Some(Err(e)) => {
                let e = Fatal::pass(e)?;
                report.connections_untested += 1;
                report.error_message(
                    "discover",
                    &at,
                    format!("connection not tested: {e}"),
                    e.is_retryable() || e.is_deadline(),
                );
            }
            None => {
                report.connections_untested += 1;
                report
                    .remaining
                    .connections
                    .push(format!("{plugin}/{}", conn.id));
            }
        }
    }
    Ok(())
}

/// One connection's test; `None` when the deadline came first.
async fn test_one<'c>(
    ctx: &Ctx<'_>,
    plugin: &str,
    conn: &'c Connection,
) -> (&'c Connection, Option<Result<ConnectionTest, DevLakeError>>) {
    if ctx.deadline.passed() {
        return (conn, None);
    }
    (
        conn,
        Some(ctx.devlake.test_connection(plugin, conn.id).await),
    )
}

/// DevLake's key middleware refused the test route only: the key works elsewhere (the listing
/// before this succeeded) but its allowed-path pattern leaves out `…/test`. Not a reason to stop
/// the run, and not the connection's fault.
fn is_test_route_refused(e: &DevLakeError) -> bool {
    matches!(e, DevLakeError::Unauthorized { message, .. } if message.contains("path doesn't match api key's scope"))
}

/// The connections found down in this run, as `(plugin, connection id)`.
pub(crate) fn down(report: &Report) -> HashSet<(String, u64)> {
    report
        .connections
        .iter()
        .filter(|c| !c.up)
        .map(|c| (c.plugin.clone(), c.connection_id))
        .collect()
}

/// Takes out of `candidates` the projects wired to a connection that is down, counting each in
/// the summary (`skippedTriggers` with reason `connectionDown`).
pub(crate) fn hold_back(
    candidates: Vec<Candidate>,
    down: &HashSet<(String, u64)>,
    report: &mut Report,
) -> Vec<Candidate> {
    if down.is_empty() {
        return candidates;
    }
    candidates
        .into_iter()
        .filter(|c| {
            let held = c
                .connections
                .iter()
                .any(|(plugin, id)| down.contains(&(plugin.clone(), *id)));
            if held {
                report
                    .counts(c.plugin.as_deref())
                    .projects_skipped_connection_down += 1;
                trigger::skipped(report, c, "connectionDown");
            }
            !held
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(project: &str, connections: &[(&str, u64)]) -> Candidate {
        Candidate {
            project: project.into(),
            blueprint_id: 1,
            plugin: connections.first().map(|c| c.0.to_string()),
            connections: connections
                .iter()
                .map(|(p, id)| (p.to_string(), *id))
                .collect(),
            enabled: true,
            wired: true,
            reason: "all",
        }
    }

    #[test]
    fn projects_of_a_down_connection_are_held_back_and_counted() {
        let mut report = Report::default();
        let down: HashSet<(String, u64)> = [("github".to_string(), 2)].into();
        let kept = hold_back(
            vec![
                candidate("a", &[("github", 1)]),
                candidate("b", &[("github", 2)]),
                // Also wired to the down connection: held back too.
                candidate("c", &[("jira", 2), ("github", 2)]),
                candidate("d", &[("jira", 2)]),
            ],
            &down,
            &mut report,
        );
        let names: Vec<&str> = kept.iter().map(|c| c.project.as_str()).collect();
        assert_eq!(names, ["a", "d"]);
        let held: Vec<(&str, &str)> = report
            .skipped_triggers
            .iter()
            .map(|s| (s.project.as_str(), s.reason.as_str()))
            .collect();
        assert_eq!(held, [("b", "connectionDown"), ("c", "connectionDown")]);
        assert_eq!(report.totals().projects_skipped_connection_down, 2);
        assert_eq!(report.totals().skipped, 2);
    }

    #[test]
    fn only_the_path_scope_refusal_is_the_test_routes_own() {
        let refused = |message: &str| DevLakeError::Unauthorized {
            status: 403,
            method: "POST".into(),
            path: "/plugins/github/connections/1/test".into(),
            message: message.into(),
        };
        assert!(is_test_route_refused(&refused(
            "path doesn't match api key's scope"
        )));
        assert!(!is_test_route_refused(&refused("api key is invalid")));
    }
}
