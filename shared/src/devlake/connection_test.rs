//! `POST /plugins/{plugin}/connections/{id}/test`: DevLake tries the stored connection against
//! the source tool (each plugin's `TestExistingConnection` in
//! `backend/plugins/<plugin>/api/connection_api.go`) and answers with its verdict.
//!
//! What the answer looks like (docs/devlake-api.md#testing-a-connection):
//!
//! * up: 200 and DevLake's envelope with `success: true`, `message: "success"`, plus the
//!   plugin's details (GitLab, Jira, Jenkins, Bitbucket, Bamboo echo the *sanitised* connection;
//!   GitHub lists each token, sanitised, with its own verdict);
//! * down: the plugin's error in the envelope, `success: false`, with the status of the error's
//!   type — 400 (GitHub, GitLab, Jenkins, Bitbucket: `StatusUnauthorized error when …`), 401/403
//!   (Jira `Please check your credential`), the remote's status (CircleCI `unexpected status
//!   code: 401`), 500 (an unreachable tool: `Failed to connect` around the dial error);
//! * down with 200: GitHub tests each of a connection's tokens and answers 200 with `success:
//!   false` and the failing token's message when one fails.
//!
//! So a connection is up only when the answer is 2xx *and* does not say `success: false`. The
//! answer can echo connection details; only the message is kept, on one line, without the API
//! key or anything shaped like a credential ([`redact_secrets`]).

use reqwest::Method;
use serde::Deserialize;

use super::client::{DevLakeClient, Result};
use super::http::{scrub, truncate_chars, Accept};

/// How much of DevLake's message a verdict keeps.
pub const TEST_MESSAGE_CHARS: usize = 300;

/// DevLake's verdict on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionTest {
    pub up: bool,
    /// The HTTP status of DevLake's answer.
    pub status: u16,
    /// Why it is down, as DevLake said it (one line, no secrets); empty when up.
    pub message: String,
}

/// The parts of a test answer the verdict needs (DevLake's `shared.ApiBody`, GitHub's
/// `tokens`). Everything else, the echoed connection included, is never read.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    causes: Option<Vec<String>>,
    #[serde(default)]
    tokens: Option<Vec<TokenAnswer>>,
}

#[derive(Debug, Default, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    message: String,
}

impl DevLakeClient {
    /// Asks DevLake to test connection `connection_id` of `plugin`. `Ok` carries DevLake's
    /// verdict, up or down; `Err` means there is none: DevLake was not reached, refused the API
    /// key (including a key whose allowed path does not cover the test route), waits for a
    /// migration, no longer has the connection (404), or something other than DevLake answered. Not retried: a 5xx here is the
    /// connection's answer, and the test changes nothing, so it counts as a read.
    pub async fn test_connection(
        &self,
        plugin: &str,
        connection_id: u64,
    ) -> Result<ConnectionTest> {
        let path = format!("{}/test", Self::connection_path(plugin, connection_id));
        let answer = self
            .execute(
                Method::POST,
                &path,
                &[],
                Some(b"{}".to_vec()),
                Accept::HandlerVerdict,
            )
            .await?;
        Ok(verdict(
            answer.status.as_u16(),
            &answer.body,
            answer.key.as_deref(),
        ))
    }
}

/// The verdict in a test answer that is either 2xx or a handler's envelope.
pub fn verdict(status: u16, body: &[u8], api_key: Option<&str>) -> ConnectionTest {
    let answer: Answer = serde_json::from_slice(body).unwrap_or_default();
    let up = (200..300).contains(&status) && answer.success != Some(false);
    if up {
        return ConnectionTest {
            up,
            status,
            message: String::new(),
        };
    }
    // GitHub puts the failing token's message at the top too; fall back to it if not.
    let mut message = answer.message.trim().to_string();
    if message.is_empty() {
        if let Some(token) = answer
            .tokens
            .iter()
            .flatten()
            .find(|t| !t.success && !t.message.trim().is_empty())
        {
            message = token.message.trim().to_string();
        }
    }
    // The cause of a wrapped error (the dial error under `Failed to connect`) says what broke.
    for cause in answer.causes.iter().flatten() {
        let cause = cause.trim();
        if !cause.is_empty() && !message.contains(cause) {
            message = format!("{message}; caused by: {cause}");
        }
    }
    if message.is_empty() {
        message = format!("DevLake's test answered {status} without a message");
    }
    let one_line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    ConnectionTest {
        up,
        status,
        message: truncate_chars(
            &redact_secrets(&scrub(&one_line, api_key)),
            TEST_MESSAGE_CHARS,
        ),
    }
}

/// Prefixes of credentials the source tools issue (GitHub classic, OAuth, user-to-server,
/// server-to-server, refresh and fine-grained tokens; GitLab personal access tokens).
const TOKEN_PREFIXES: [&str; 7] = [
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "glpat-",
];

/// JSON fields of DevLake's connection models that hold a secret.
const SECRET_FIELDS: [&str; 6] = [
    "\"token\":",
    "\"password\":",
    "\"secretKey\":",
    "\"appKey\":",
    "\"accessToken\":",
    "\"privateKey\":",
];

/// `text` with anything shaped like a credential replaced by `<redacted>`: tokens with a
/// known prefix, the value after `Bearer `, a URL's user information, and the values of the
/// connection models' secret fields. DevLake sanitises what it echoes, but a message can quote
/// a source tool's answer or a URL; nothing secret may reach a log, a summary or the table.
pub fn redact_secrets(text: &str) -> String {
    let mut out = text.to_string();
    for prefix in TOKEN_PREFIXES {
        out = redact_after(&out, prefix, true, |c| {
            c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*'
        });
    }
    out = redact_after(&out, "Bearer ", false, |c| !c.is_whitespace() && c != '"');
    out = redact_after(&out, "bearer ", false, |c| !c.is_whitespace() && c != '"');
    for field in SECRET_FIELDS {
        out = redact_json_string(&out, field);
    }
    redact_userinfo(&out)
}

/// Replaces the run of `part` characters after each `marker` (keeping the marker unless
/// `with_marker`) by `<redacted>`.
fn redact_after(
    text: &str,
    marker: &str,
    with_marker: bool,
    part: impl Fn(char) -> bool,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(marker) {
        let after = &rest[at + marker.len()..];
        let len = after.find(|c: char| !part(c)).unwrap_or(after.len());
        if len == 0 {
            out.push_str(&rest[..at + marker.len()]);
            rest = after;
            continue;
        }
        out.push_str(&rest[..at]);
        if !with_marker {
            out.push_str(marker);
        }
        out.push_str("<redacted>");
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

/// `"field": "value"` → `"field": "<redacted>"` for every occurrence.
fn redact_json_string(text: &str, field: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(field) {
        let after = &rest[at + field.len()..];
        let value = after.trim_start();
        let Some(inner) = value.strip_prefix('"') else {
            out.push_str(&rest[..at + field.len()]);
            rest = after;
            continue;
        };
        let end = inner.find('"').unwrap_or(inner.len());
        out.push_str(&rest[..at + field.len()]);
        out.push_str(&after[..after.len() - value.len()]);
        out.push_str("\"<redacted>\"");
        rest = inner.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// `scheme://user:secret@host` → `scheme://<redacted>@host`.
fn redact_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let after = &rest[at + 3..];
        let authority_end = after
            .find(|c: char| c == '/' || c == '"' || c.is_whitespace())
            .unwrap_or(after.len());
        out.push_str(&rest[..at + 3]);
        match after[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("<redacted>");
                out.push_str(&after[userinfo_end..authority_end]);
            }
            None => out.push_str(&after[..authority_end]),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: serde_json::Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn up_is_a_2xx_that_does_not_say_otherwise() {
        // GitLab's success answer echoes the sanitised connection (gitlab TestExistingConnection).
        let gitlab = body(
            json!({"code": 0, "success": true, "message": "success", "causes": null,
            "data": null, "connection": {"name": "gitlab", "token": "glpat-********"}}),
        );
        assert_eq!(
            verdict(200, &gitlab, None),
            ConnectionTest {
                up: true,
                status: 200,
                message: String::new()
            }
        );
        assert!(verdict(200, b"", None).up, "a 2xx without a body is up");
    }

    #[test]
    fn githubs_200_with_a_failing_token_is_down() {
        // github testExistingConnection: one failing token makes the whole answer
        // `success: false` with that token's message, still with status 200.
        let answer = body(json!({"code": 0, "success": false,
            "message": "StatusUnauthorized error when testing connection (400)",
            "causes": ["StatusUnauthorized error when testing connection (400)"], "data": null,
            "tokens": [{"auth_method": "AccessToken", "token": "ghp_EXAMPLEexampleEXAMPLEexample12",
                        "success": false,
                        "message": "StatusUnauthorized error when testing connection (400)",
                        "login": "", "warning": false}]}));
        let v = verdict(200, &answer, None);
        assert!(!v.up);
        assert_eq!(v.status, 200);
        assert_eq!(
            v.message,
            "StatusUnauthorized error when testing connection (400)"
        );
        // Only tokens carry the message: still shown.
        let tokens_only = body(json!({"success": false, "message": "",
            "tokens": [{"success": true, "message": "success"},
                       {"success": false, "message": "invalid token"}]}));
        assert_eq!(verdict(200, &tokens_only, None).message, "invalid token");
    }

    #[test]
    fn an_error_envelope_is_down_with_its_message_and_cause() {
        let unreachable = body(json!({"code": 0, "success": false,
            "message": "Failed to connect\nWraps: (2) dial tcp 10.20.0.5:443: connect: connection refused",
            "causes": ["dial tcp 10.20.0.5:443: connect: connection refused"], "data": null}));
        let v = verdict(500, &unreachable, None);
        assert!(!v.up);
        assert_eq!(
            v.message,
            "Failed to connect Wraps: (2) dial tcp 10.20.0.5:443: connect: connection refused"
        );
        let with_cause = body(json!({"success": false, "message": "Failed to connect",
            "causes": ["lookup gitlab.internal: no such host"]}));
        assert_eq!(
            verdict(500, &with_cause, None).message,
            "Failed to connect; caused by: lookup gitlab.internal: no such host"
        );
        let empty = body(json!({"success": false, "message": ""}));
        assert_eq!(
            verdict(400, &empty, None).message,
            "DevLake's test answered 400 without a message"
        );
        let long = body(json!({"success": false, "message": "x".repeat(2000)}));
        assert_eq!(
            verdict(400, &long, None).message.chars().count(),
            TEST_MESSAGE_CHARS + 1
        );
    }

    #[test]
    fn secrets_are_redacted_wherever_they_appear() {
        let cases = [
            (
                "bad token ghp_AbCdEf0123456789AbCdEf0123456789 refused",
                "bad token <redacted> refused",
            ),
            (
                "glpat-xY12_ab-CD34efGH56ij and github_pat_11AAAA_bbbb",
                "<redacted> and <redacted>",
            ),
            (
                "GET https://ci:s3cret@jenkins.example/api/json failed",
                "GET https://<redacted>@jenkins.example/api/json failed",
            ),
            (
                "header Authorization: Bearer abc.def.ghi was refused",
                "header Authorization: Bearer <redacted> was refused",
            ),
            (
                r#"{"name":"jira","password": "hunter2","token":"t0k3n","endpoint":"https://x/"}"#,
                r#"{"name":"jira","password": "<redacted>","token":"<redacted>","endpoint":"https://x/"}"#,
            ),
            // Plain words stay: GitLab's "token need api or read_api permissions scope".
            (
                "token need api or read_api permissions scope (400)",
                "token need api or read_api permissions scope (400)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact_secrets(text), want, "{text}");
        }
        let keyed = body(json!({"success": false, "message": "key dlk-123 refused"}));
        assert_eq!(
            verdict(400, &keyed, Some("dlk-123")).message,
            "key <redacted> refused"
        );
    }
}
