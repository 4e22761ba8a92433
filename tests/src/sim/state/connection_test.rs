//! Testing a stored connection, `POST /plugins/{plugin}/connections/{id}/test` (the simulator's
//! counterpart of the client's `connection_test.rs`). DevLake's handler is each plugin's
//! `TestExistingConnection` (`backend/plugins/<plugin>/api/connection_api.go`): it loads the
//! stored connection (`dsHelper.ConnApi.GetMergedConnection`; a missing one is DevLake's JSON
//! 404), calls the plugin's `testConnection`, which asks the source tool, and on error answers
//! through `plugin.WrapTestConnectionErrResp` and `shared.ApiOutputError`: the error's message
//! with its ` (<status>)` suffix (`addMessage`, `core/errors/message.go`), `causes` from the
//! wrapped layers, and the HTTP status of the error's type. The simulated source tool is either
//! reachable with valid credentials ([`ConnectionTestMode::Up`]), refusing them (401), or not
//! reachable at all.
//!
//! Only the test route looks at the mode: the simulated collection and remote-scope listings of
//! a "down" connection keep working.

use serde::{Deserialize, Serialize};

use super::*;

/// How the simulated source tool behind a connection answers DevLake's test.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionTestMode {
    /// Reachable, credentials accepted.
    #[default]
    Up,
    /// Reachable, answers 401 to the connection's credentials (an expired or revoked token).
    Unauthorized,
    /// Not reachable: DevLake's dial fails (`Failed to connect`).
    Unreachable,
}

impl State {
    pub(crate) fn set_connection_test(
        &mut self,
        plugin: &str,
        id: u64,
        mode: ConnectionTestMode,
    ) -> ApiResult<()> {
        self.connection_mut(plugin, id)?.test = mode;
        Ok(())
    }

    /// DevLake's answer to testing connection `id` of `plugin`: `(status, body)`.
    pub(crate) fn test_connection(&self, plugin: &str, id: u64) -> ApiResult<(u16, Value)> {
        let conn = self.connection(plugin, id)?;
        let token = conn.secret.clone().unwrap_or_default();
        let host = conn
            .body
            .get("endpoint")
            .and_then(Value::as_str)
            .and_then(|e| e.split("://").nth(1))
            .and_then(|rest| rest.split(['/', ':']).next())
            .filter(|h| !h.is_empty())
            .unwrap_or("localhost")
            .to_string();
        // bamboo testConnection only builds the API client (no request to the tool), so a
        // refused credential tests as up there.
        let mode = match (plugin, conn.test) {
            ("bamboo", ConnectionTestMode::Unauthorized) => ConnectionTestMode::Up,
            (_, mode) => mode,
        };
        Ok(match (plugin, mode) {
            // github TestExistingConnection → testExistingConnection tests each token with
            // testGithubConnAccessTokenAuth and always answers 200; a failing token makes the
            // whole answer `success: false` with that token's message (`err.Error()`, suffix
            // included) as `message` and `causes`.
            ("github", mode) => {
                let failure = match mode {
                    ConnectionTestMode::Up => None,
                    // `errors.HttpStatus(http.StatusBadRequest).New(…)` on a 401 from `GET user`.
                    ConnectionTestMode::Unauthorized => {
                        Some("StatusUnauthorized error when testing connection (400)".to_string())
                    }
                    ConnectionTestMode::Unreachable => Some(failed_to_connect(&host).0),
                };
                let sanitized = github_sanitize_token(&token);
                let token_result = json!({
                    "auth_method": "AccessToken", "token": sanitized,
                    "success": failure.is_none(),
                    "message": failure.clone().unwrap_or_default(),
                    "login": if failure.is_none() { "sim-user" } else { "" },
                    "warning": false,
                });
                (
                    200,
                    json!({
                        "code": 0,
                        "success": failure.is_none(),
                        "message": failure.clone().unwrap_or_else(|| "success".into()),
                        "causes": failure.map(|m| vec![m]),
                        "data": null,
                        "tokens": [token_result],
                    }),
                )
            }
            (_, ConnectionTestMode::Up) => {
                // `body.Success = true; body.Message = "success"`; GitLab, Jira, Jenkins,
                // Bitbucket (Server) and Bamboo add the sanitised connection (`Sanitize()`,
                // `utils.SanitizeString`); CircleCI and Azure DevOps add nothing.
                let mut body = json!({"code": 0, "success": true, "message": "success",
                                      "causes": null, "data": null});
                if !matches!(plugin, "circleci" | "azuredevops_go") {
                    let mut echoed = conn.body.clone();
                    echoed.remove("id");
                    echoed.remove("name");
                    echoed.remove("createdAt");
                    echoed.remove("updatedAt");
                    if !token.is_empty() {
                        echoed.insert("token".into(), json!(sanitize_string(&token)));
                    }
                    // Basic-auth plugins blank the password (`JiraConn.Sanitize`,
                    // `JenkinsConn.Sanitize`).
                    if let Some(password) = echoed.get_mut("password") {
                        *password = json!("");
                    }
                    body["connection"] = Value::Object(echoed);
                }
                (200, body)
            }
            (_, ConnectionTestMode::Unreachable) => {
                // `api.NewApiClientFromConnection` → `NewApiClient`: `CheckNetwork` fails and
                // is wrapped as `errors.Default.Wrap(err, "Failed to connect")`: type Default,
                // hence 500.
                let (message, cause) = failed_to_connect(&host);
                (500, failure(&message, Some(vec![cause])))
            }
            (_, ConnectionTestMode::Unauthorized) => {
                let (status, message) = unauthorized(plugin);
                (status, failure(&message, None))
            }
        })
    }
}

/// The error each plugin's `testConnection` returns when the source tool answers 401, as
/// `(HTTP status, message with its suffix)`.
fn unauthorized(plugin: &str) -> (u16, String) {
    let (status, text) = match plugin {
        // gitlab testConnection: `errors.HttpStatus(http.StatusBadRequest).New(…)`.
        "gitlab" => (
            400,
            "StatusUnauthorized error when testing api or read_api permissions",
        ),
        // jira testConnection: `errors.HttpStatus(res.StatusCode).New("Please check your
        // credential")` on the serverInfo call.
        "jira" => (401, "Please check your credential"),
        // jenkins testConnection.
        "jenkins" => (400, "StatusUnauthorized error while testing connection"),
        // bitbucket testConnection.
        "bitbucket" => (
            400,
            "StatusUnauthorized error when testing connection. Please check your credentials.",
        ),
        // bitbucket_server testConnection (api/connection.go).
        "bitbucket_server" => (400, "StatusUnauthorized error when testing connection"),
        // circleci testConnection: `errors.HttpStatus(res.StatusCode).New(fmt.Sprintf(
        // "unexpected status code: %d", …))`.
        "circleci" => (401, "unexpected status code: 401"),
        // azuredevops_go testConnection → azuredevops.Client.GetProjects:
        // `errors.Unauthorized.New("failed to read projects")`.
        "azuredevops_go" => (401, "failed to read projects"),
        // github's single-token message (testGithubConnAccessTokenAuth), for anything else.
        _ => (400, "StatusUnauthorized error when testing connection"),
    };
    (status, format!("{text} ({status})"))
}

/// `Failed to connect` around the dial error, as `(message, cause)`: the message is DevLake's
/// `Error()` of the wrapped error, cockroachdb/errors' verbose form after its first line (one
/// `Wraps:` line per layer, then the layers' types); the cause is the inner layer's message.
fn failed_to_connect(host: &str) -> (String, String) {
    let dial = format!("dial tcp {host}:443: connect: connection refused");
    (
        format!(
            "Failed to connect\nWraps: (2) {dial}\nWraps: (3) {dial}\nError types: (1) \
             *hintdetail.withDetail (2) *hintdetail.withDetail (3) *net.OpError"
        ),
        dial,
    )
}

/// DevLake's error envelope (`shared.ApiOutputError`: no `code`, so 0).
fn failure(message: &str, causes: Option<Vec<String>>) -> Value {
    json!({"code": 0, "success": false, "message": message, "causes": causes, "data": null})
}

/// `utils.SanitizeString` (`core/utils/strings.go`): all but the first and last two characters
/// (one each up to five characters) starred.
pub(crate) fn sanitize_string(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    if n <= 2 {
        return "*".repeat(n);
    }
    let keep = if n <= 5 { 1 } else { 2 };
    let mut out: String = chars[..keep].iter().collect();
    out.push_str(&"*".repeat(n - 2 * keep));
    out.extend(&chars[n - keep..]);
    out
}

/// `GithubConn.SanitizeToken` (`plugins/github/models/connection.go`): a classic token
/// (`ghp_`) keeps its prefix and the next 8 characters, then 20 are starred; others fall back
/// to [`sanitize_string`].
pub(crate) fn github_sanitize_token(token: &str) -> String {
    match token.strip_prefix("ghp_") {
        Some(rest) if rest.len() >= 28 => {
            format!("ghp_{}{}{}", &rest[..8], "*".repeat(20), &rest[28..])
        }
        _ => sanitize_string(token),
    }
}
