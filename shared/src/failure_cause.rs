//! Why a pipeline failed, as one of a fixed set of causes (docs/failure-causes.md), derived from
//! the failed pipeline's `status`, `errorName` and `message`.
//!
//! DevLake keeps no error code on a pipeline. When a pipeline ends in error its runner stores the
//! error twice: `message` is the error's text and `errorName` the whole chain of messages joined
//! by `caused by:` (`runPipeline` in `backend/server/services/pipeline_runner.go`). Each layer of
//! that chain comes from a format string in DevLake's Go source, and a layer whose error type has
//! an HTTP status carries it as a ` (<status>)` suffix (`addMessage` in
//! `backend/core/errors/message.go`). The remote tool's own answer is quoted inside it
//! (`Response: <body>`, `api_async_client.go`). So the cause is read from the text: an ordered
//! table of case-insensitive substrings, first match wins. The order resolves the overlaps that
//! real chains have: GitHub answers a rate limit with 403, so `rate_limit` comes before `auth`;
//! a database deadlock mentions neither a status nor a host, so `devlake_internal` needs its own
//! words; `not_found` comes late because "not found" also appears inside messages of other
//! causes.
//!
//! The table is the documented contract; [`RULES`] is rendered into docs/failure-causes.md by
//! hand and a test checks both agree.

use serde::{Deserialize, Serialize};

/// The cause of a recorded failure. Serialised (store, summaries, the `reason` label) in
/// snake_case: `auth`, `rate_limit`, `not_found`, `timeout`, `network`, `devlake_internal`,
/// `cancelled`, `unknown`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// The source tool refused the connection's credentials or permissions (401/403).
    Auth,
    /// The source tool throttled DevLake (429, GitHub's 403 "rate limit exceeded").
    RateLimit,
    /// What the scope points at is gone on the source tool, or in DevLake's tables (404).
    NotFound,
    /// A request or lock waited too long (`context deadline exceeded`, 504).
    Timeout,
    /// The source tool could not be reached (DNS, refused or reset connections, 502/503).
    Network,
    /// DevLake itself failed: its database, a panic in a plugin.
    DevlakeInternal,
    /// The pipeline was cancelled (`TASK_CANCELLED`), by someone or by a policy.
    Cancelled,
    /// None of the above; also every failure recorded before causes existed.
    #[default]
    Unknown,
}

impl FailureCause {
    /// Every cause, in the order of the table.
    pub const ALL: [FailureCause; 8] = [
        FailureCause::Cancelled,
        FailureCause::RateLimit,
        FailureCause::Auth,
        FailureCause::Timeout,
        FailureCause::Network,
        FailureCause::DevlakeInternal,
        FailureCause::NotFound,
        FailureCause::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureCause::Auth => "auth",
            FailureCause::RateLimit => "rate_limit",
            FailureCause::NotFound => "not_found",
            FailureCause::Timeout => "timeout",
            FailureCause::Network => "network",
            FailureCause::DevlakeInternal => "devlake_internal",
            FailureCause::Cancelled => "cancelled",
            FailureCause::Unknown => "unknown",
        }
    }

    /// Whether running the same pipeline again can succeed without anyone changing anything:
    /// throttling, time-outs, network trouble and DevLake's own hiccups pass; refused
    /// credentials and missing objects stay until someone fixes them, and a cancellation was
    /// someone's (or a policy's) decision that a re-run would undo. `unknown` is retried: an
    /// unrecognised error is more often transient than not, and `AUTO_RERUN_MAX` bounds it.
    pub fn heals_by_retry(self) -> bool {
        !matches!(
            self,
            FailureCause::Auth | FailureCause::NotFound | FailureCause::Cancelled
        )
    }
}

impl std::fmt::Display for FailureCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ordered table: the first cause with a pattern found (case-insensitively) in `errorName`
/// or `message` wins. `cancelled` also wins by status alone.
pub const RULES: &[(FailureCause, &[&str])] = &[
    (FailureCause::Cancelled, &["context canceled"]),
    (
        FailureCause::RateLimit,
        &[
            "rate limit",
            "ratelimit",
            "(429)",
            "too many requests",
            "abuse detection",
        ],
    ),
    (
        FailureCause::Auth,
        &[
            "(401)",
            "(403)",
            "unauthorized",
            "authentication failed",
            "bad credentials",
            "check your credential",
            "forbidden",
            "invalid token",
            "token expired",
            "token has expired",
        ],
    ),
    (
        FailureCause::Timeout,
        &[
            "deadline exceeded",
            "timeout exceeded",
            "timed out",
            "i/o timeout",
            "timeout:",
            "(504)",
        ],
    ),
    (
        FailureCause::Network,
        &[
            "connection refused",
            "connection reset",
            "no such host",
            "failed to resolve dns",
            "failed to connect",
            "fail to connect",
            "network is unreachable",
            "no route to host",
            "broken pipe",
            "unexpected eof",
            "tls handshake",
            "x509:",
            "(502)",
            "(503)",
        ],
    ),
    (
        FailureCause::DevlakeInternal,
        &[
            "error 1040",
            "error 1054",
            "error 1062",
            "error 1146",
            "error 1205",
            "error 1213",
            "error 1406",
            "duplicate entry",
            "deadlock found",
            "driver: bad connection",
            "invalid connection",
            "panic",
            "nil pointer dereference",
            "invalid memory address",
        ],
    ),
    (
        FailureCause::NotFound,
        &[
            "(404)",
            "record not found",
            "404 not found",
            "\"not found\"",
        ],
    ),
];

/// The cause of a finished pipeline: `TASK_CANCELLED` is `cancelled` whatever its text;
/// otherwise the first [`RULES`] entry with a pattern in `error_name` or `message`; `unknown`
/// when nothing matches (or both are empty).
pub fn classify(status: &str, error_name: &str, message: &str) -> FailureCause {
    if status == crate::devlake::models::status::CANCELLED {
        return FailureCause::Cancelled;
    }
    let text = format!("{error_name}\n{message}").to_ascii_lowercase();
    RULES
        .iter()
        .find(|(_, patterns)| patterns.iter().any(|p| text.contains(p)))
        .map_or(FailureCause::Unknown, |(cause, _)| *cause)
}

#[cfg(test)]
mod tests {
    //! Each case is built from DevLake's own format strings (apache/incubator-devlake,
    //! `backend/`), filled in as a real run fills them; the file each layer comes from is named
    //! above the case. Common layers: `services/pipeline_runner.go` (`Error running pipeline
    //! %d.`), `services/task.go` (`Error running task %d.`), `core/runner/run_task.go`
    //! (`subtask %s ended unexpectedly`), `helpers/pluginhelper/api/api_collector.go` (`Error
    //! waiting for async Collector execution`), `helpers/pluginhelper/api/api_async_client.go`
    //! (`Retry exceeded %d times calling %s. The last error was: %s` around `Http DoAsync error
    //! calling [method:%s path:%s query:%s]. Response: %s`), and the ` (<status>)` suffix of
    //! `core/errors/message.go`. `errorName` joins the layers with `\ncaused by: `
    //! (`Messages.Format`, `core/errors/message.go`); `message` starts with the top layer.

    use super::*;

    /// The chain DevLake stores in `errorName` for an error raised inside a collector subtask.
    fn chain(subtask: &str, layers: &[&str]) -> String {
        let mut all = vec![
            "Error running pipeline 412.".to_string(),
            "Error running task 1287.".to_string(),
            format!("subtask {subtask} ended unexpectedly"),
        ];
        all.extend(layers.iter().map(|l| l.to_string()));
        all.join("\ncaused by: ")
    }

    struct Case {
        status: &'static str,
        error_name: String,
        message: String,
        want: FailureCause,
    }

    fn failed(error_name: String, want: FailureCause) -> Case {
        Case {
            status: "TASK_FAILED",
            message: "Error running pipeline 412.".into(),
            error_name,
            want,
        }
    }

    fn cases() -> Vec<Case> {
        vec![
            // auth: the collector's default AfterResponse turns a 401 into
            // `errors.Unauthorized.New("authentication failed, please check your AccessToken")`
            // (helpers/pluginhelper/api/api_collector.go; the same line in
            // plugins/github/tasks/shared.go ignoreHTTPStatus404), retried and wrapped by
            // api_async_client.go.
            failed(
                chain(
                    "collectApiPullRequests",
                    &[
                        "Error waiting for async Collector execution (401)",
                        "Retry exceeded 3 times calling repos/acme/api/pulls. The last error was: \
                         authentication failed, please check your AccessToken (401) (401)",
                        "authentication failed, please check your AccessToken (401)",
                    ],
                ),
                FailureCause::Auth,
            ),
            // auth: plugins/jira/tasks/api_client.go GetJiraServerInfo,
            // `errors.HttpStatus(res.StatusCode).New("request failed with status code: %d")`,
            // under `unable to get Jira connection`-style preparation (plugins/jira/impl/impl.go
            // PrepareTaskData: "failed to create jira api client").
            failed(
                [
                    "Error running pipeline 412.",
                    "Error running task 1290.",
                    "error preparing task data for jira (403)",
                    "failed to create jira api client (403)",
                    "request failed with status code: 403 (403)",
                ]
                .join("\ncaused by: "),
                FailureCause::Auth,
            ),
            // rate_limit: GitHub answers an exhausted quota with 403 and a JSON body, quoted by
            // api_async_client.go (`Http DoAsync error calling …. Response: %s`, type
            // HttpStatus(403)); must not read as `auth`.
            failed(
                chain(
                    "collectApiIssues",
                    &[
                        "Retry exceeded 3 times calling repos/acme/api/issues. The last error \
                       was: Http DoAsync error calling [method:GET path:repos/acme/api/issues \
                       query:map[page:[7] per_page:[100] state:[all]]]. Response: \
                       {\"message\":\"API rate limit exceeded for installation ID 4711.\",\
                       \"documentation_url\":\"https://docs.github.com/rest/overview/\
                       resources-in-the-rest-api#rate-limiting\"} (403)",
                    ],
                ),
                FailureCause::RateLimit,
            ),
            // rate_limit: plugins/gh-copilot/tasks/github_errors.go buildGitHubApiError, 429.
            failed(
                chain(
                    "collectCopilotOrgMetrics",
                    &[
                        "GitHub rate limited the request (429). Respect Retry-After guidance \
                       before retrying. Retry-After: 60. Details: API rate limit exceeded (429)",
                    ],
                ),
                FailureCause::RateLimit,
            ),
            // rate_limit: GitLab's 429 quoted by api_async_client.go.
            failed(
                chain(
                    "collectApiMergeRequests",
                    &[
                        "Retry exceeded 3 times calling projects/7/merge_requests. The last error \
                       was: Http DoAsync error calling [method:GET \
                       path:projects/7/merge_requests query:map[page:[2] per_page:[100]]]. \
                       Response: Retry later (429)",
                    ],
                ),
                FailureCause::RateLimit,
            ),
            // not_found: plugins/github/impl/impl.go PrepareTaskData `fail to find repo %s`
            // around the DAL's `errors.NotFound.WrapRaw(gorm.ErrRecordNotFound)`
            // (impls/dalgorm/dalgorm.go); core/runner/run_task.go `error preparing task data
            // for %s`.
            failed(
                [
                    "Error running pipeline 412.",
                    "Error running task 1288.",
                    "error preparing task data for github (404)",
                    "fail to find repo acme/api (404)",
                    "record not found (404)",
                ]
                .join("\ncaused by: "),
                FailureCause::NotFound,
            ),
            // not_found: Jira's 404 for a deleted board, quoted by api_async_client.go; its
            // "permission" wording is not an auth refusal.
            failed(
                chain(
                    "collectIssues",
                    &[
                        "Retry exceeded 3 times calling agile/1.0/board/42/issue. The last error \
                       was: Http DoAsync error calling [method:GET \
                       path:agile/1.0/board/42/issue query:map[maxResults:[100]]]. Response: \
                       {\"errorMessages\":[\"Board does not exist or you do not have \
                       permission to see it.\"],\"errors\":{}} (404)",
                    ],
                ),
                FailureCause::NotFound,
            ),
            // timeout: Go's net/http client error as api_async_client.go keeps it
            // (`errMessage = err.Error()`), then `Retry exceeded …`.
            failed(
                chain(
                    "collectApiPullRequestCommits",
                    &[
                        "Retry exceeded 3 times calling repos/acme/api/pulls/9/commits. The last \
                       error was: Get \"https://api.github.com/repos/acme/api/pulls/9/commits\": \
                       context deadline exceeded (Client.Timeout exceeded while awaiting \
                       headers)",
                    ],
                ),
                FailureCause::Timeout,
            ),
            // timeout: helpers/dbhelper/txhelper.go LockTablesTimeout,
            // `errors.Timeout.New("lock tables timeout: …")` (504).
            failed(
                chain(
                    "convertApiPullRequests",
                    &["lock tables timeout: [{_tool_github_pull_requests true}] (504)"],
                ),
                FailureCause::Timeout,
            ),
            // network: helpers/pluginhelper/api/api_client.go NewApiClient `Failed to connect`
            // around core/utils/network_helper.go CheckNetwork's dial error, under
            // plugins/github/impl/impl.go `unable to get github API client instance`.
            failed(
                [
                    "Error running pipeline 412.",
                    "Error running task 1289.",
                    "error preparing task data for github",
                    "unable to get github API client instance",
                    "Failed to connect",
                    "dial tcp 10.20.0.5:443: connect: connection refused",
                ]
                .join("\ncaused by: "),
                FailureCause::Network,
            ),
            // network: api_client.go `Failed to resolve DNS` around network_helper.go CheckDNS.
            failed(
                [
                    "Error running pipeline 412.",
                    "Error running task 1291.",
                    "error preparing task data for gitlab",
                    "Failed to resolve DNS",
                    "lookup gitlab.internal.example on 10.0.0.2:53: no such host",
                ]
                .join("\ncaused by: "),
                FailureCause::Network,
            ),
            // network: a reset connection mid-collection, as api_async_client.go keeps it.
            failed(
                chain(
                    "collectApiJobs",
                    &[
                        "Retry exceeded 3 times calling projects/7/jobs. The last error was: Get \
                       \"https://gitlab.example.com/api/v4/projects/7/jobs?page=3\": read tcp \
                       10.20.0.7:51234->10.20.0.5:443: read: connection reset by peer",
                    ],
                ),
                FailureCause::Network,
            ),
            // network: a 502 from the proxy in front of Jenkins, quoted by api_async_client.go.
            failed(
                chain(
                    "collectApiBuilds",
                    &[
                        "Retry exceeded 3 times calling job/platform/job/api/api/json. The last \
                       error was: Http DoAsync error calling [method:GET \
                       path:job/platform/job/api/api/json query:map[tree:[allBuilds]]]. \
                       Response: <html><body><h1>502 Bad Gateway</h1></body></html> (502)",
                    ],
                ),
                FailureCause::Network,
            ),
            // devlake_internal: helpers/pluginhelper/api/api_extractor.go `error adding result
            // to batch` around a MySQL duplicate-key error.
            failed(
                chain(
                    "extractApiPullRequests",
                    &[
                        "error adding result to batch",
                        "Error 1062 (23000): Duplicate entry '1-4711' for key \
                         '_tool_github_pull_requests.PRIMARY'",
                    ],
                ),
                FailureCause::DevlakeInternal,
            ),
            // devlake_internal: core/runner/run_task.go RunPluginTask's recover, `run task
            // failed with panic (%s)`.
            failed(
                [
                    "Error running pipeline 412.",
                    "Error running task 1292.",
                    "run task failed with panic (github.com/apache/incubator-devlake/core/\
                     runner.RunPluginSubTasks)",
                    "runtime error: invalid memory address or nil pointer dereference",
                ]
                .join("\ncaused by: "),
                FailureCause::DevlakeInternal,
            ),
            // devlake_internal: a MySQL deadlock while a converter saves
            // (helpers/pluginhelper/api/data_convertor.go `error adding result to batch`).
            failed(
                chain(
                    "convertIssues",
                    &[
                        "error adding result to batch",
                        "Error 1213 (40001): Deadlock found when trying to get lock; try \
                         restarting transaction",
                    ],
                ),
                FailureCause::DevlakeInternal,
            ),
            // cancelled: services/pipeline_runner.go runPipeline computes TASK_CANCELLED when
            // the error is context.Canceled; the status alone decides.
            Case {
                status: "TASK_CANCELLED",
                error_name: chain("collectApiIssues", &["context canceled"]),
                message: "Error running pipeline 412.".into(),
                want: FailureCause::Cancelled,
            },
            // cancelled: a cancelled queued pipeline has no text at all (services/pipeline.go
            // CancelPipeline).
            Case {
                status: "TASK_CANCELLED",
                error_name: String::new(),
                message: String::new(),
                want: FailureCause::Cancelled,
            },
            // unknown: an extractor's decode error, helpers/pluginhelper/api/api_extractor.go
            // `error calling plugin Extract implementation`.
            failed(
                chain(
                    "extractApiIssues",
                    &[
                        "error calling plugin Extract implementation",
                        "json: cannot unmarshal string into Go struct field \
                         IssuesResponse.milestone of type int",
                    ],
                ),
                FailureCause::Unknown,
            ),
            // unknown: a failed pipeline without any text (a restart with
            // RESUME_PIPELINES=false, services/pipeline.go markInterruptedPipelineAs).
            Case {
                status: "TASK_FAILED",
                error_name: String::new(),
                message: String::new(),
                want: FailureCause::Unknown,
            },
            // A pipeline id that looks like a status is not one: "404" without the suffix's
            // parentheses says nothing.
            Case {
                status: "TASK_PARTIAL",
                error_name: "Error running pipeline 404.\ncaused by: Error running task 401."
                    .into(),
                message: "Error running pipeline 404.".into(),
                want: FailureCause::Unknown,
            },
        ]
    }

    #[test]
    fn real_devlake_errors_get_their_cause() {
        for case in cases() {
            assert_eq!(
                classify(case.status, &case.error_name, &case.message),
                case.want,
                "{}\n{}",
                case.error_name,
                case.message
            );
        }
    }

    #[test]
    fn the_message_alone_is_enough() {
        // Older DevLake rows and the monitor's truncated copies may lack the full chain.
        assert_eq!(
            classify(
                "TASK_FAILED",
                "",
                "authentication failed, please check your AccessToken (401)"
            ),
            FailureCause::Auth
        );
    }

    #[test]
    fn only_auth_not_found_and_cancelled_are_not_retried() {
        let not_retried: Vec<&str> = FailureCause::ALL
            .iter()
            .filter(|c| !c.heals_by_retry())
            .map(|c| c.as_str())
            .collect();
        assert_eq!(not_retried, ["cancelled", "auth", "not_found"]);
    }

    #[test]
    fn names_serialise_as_the_label_values() {
        for cause in FailureCause::ALL {
            assert_eq!(
                serde_json::to_value(cause).unwrap(),
                serde_json::json!(cause.as_str())
            );
        }
        assert_eq!(
            serde_json::from_str::<FailureCause>("\"rate_limit\"").unwrap(),
            FailureCause::RateLimit
        );
    }

    #[test]
    fn the_documented_table_matches_the_rules() {
        let doc = include_str!("../../docs/failure-causes.md");
        for (cause, patterns) in RULES {
            for p in *patterns {
                let row = doc
                    .lines()
                    .find(|l| l.starts_with(&format!("| `{}` |", cause.as_str())))
                    .unwrap_or_else(|| panic!("docs/failure-causes.md has no row for {cause}"));
                let shown = format!("`{}`", p.replace('|', "\\|"));
                assert!(
                    row.contains(&shown),
                    "docs/failure-causes.md row {cause} lacks {shown}"
                );
            }
        }
    }
}
