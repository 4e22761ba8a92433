//! A minimal Lambda Runtime API on 127.0.0.1, for benchmarks that run the function binaries the
//! way Lambda does: the process starts with `AWS_LAMBDA_RUNTIME_API` pointing here, asks for its
//! next event (`GET .../invocation/next`), posts the answer (`.../response` or `.../error`) and
//! asks again; a function that cannot start posts `.../init/error` and exits.
//!
//! Times are taken on this process's clock, as Lambda would: start-up ("init") runs from just
//! before the process is spawned to its first `next` request; an invocation runs from the moment
//! its event is handed over to the moment the answer arrives (Lambda's billed duration).
//! `cargo lambda watch` is not used here: it adds its own process and HTTP hops, and builds the
//! function on first use.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot, watch};

use crate::serve::{serve_in_background, Serving};

/// What Lambda sets in every function's environment (apart from the credentials, region and the
/// Runtime API address, which `LambdaProcess::spawn` adds).
const LAMBDA_ENV: [(&str, &str); 9] = [
    ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand"),
    ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023"),
    ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench"),
    ("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench"),
    ("_HANDLER", "bootstrap"),
    ("LANG", "en_US.UTF-8"),
    ("TZ", ":UTC"),
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
];

/// An event waiting for the function's next `next` request.
struct Event {
    id: String,
    payload: String,
    deadline_ms: u64,
}

/// How an invocation ended, as the function reported it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Event handed over → answer received.
    pub duration: Duration,
    /// The response body (`Ok`) or the error document the function posted (`Err`).
    pub outcome: std::result::Result<String, String>,
}

struct Answer {
    at: Instant,
    outcome: std::result::Result<String, String>,
}

#[derive(Default)]
struct Shared {
    /// Events not yet handed over; one `next` at a time takes them (a function instance runs
    /// one invocation at a time).
    events: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
    /// When each event was handed over.
    delivered: Mutex<HashMap<String, Instant>>,
    /// Who waits for each event's answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    /// The error document of `POST /runtime/init/error`.
    init_error: Mutex<Option<String>>,
}

/// One function process and the Runtime API it talks to. Dropping it kills the process.
pub struct LambdaProcess {
    name: String,
    child: Child,
    spawned: Instant,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    first_next: watch::Receiver<Option<Instant>>,
    timeout: Duration,
    log_path: PathBuf,
    _serving: Serving,
    _dir: tempfile::TempDir,
}

impl LambdaProcess {
    /// Starts `binary` with a Lambda-like environment: nothing inherited from this process, the
    /// variables Lambda sets, dummy credentials (as Lambda gives them, in the environment), the
    /// Runtime API address, and `env` on top. `timeout` is the function's configured timeout
    /// (each event's deadline). Its stdout and stderr go to a log file (see [`Self::log`]).
    pub async fn spawn(
        binary: &Path,
        name: &str,
        memory_mb: u64,
        timeout: Duration,
        env: &[(String, String)],
    ) -> Result<LambdaProcess> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: tokio::sync::Mutex::new(Some(rx)),
            ..Shared::default()
        });
        let (first_tx, first_next) = watch::channel(None);
        let app = routes(shared.clone(), Arc::new(first_tx));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot bind the Runtime API")?;
        let address = listener.local_addr()?.to_string();
        let serving = serve_in_background(listener, app);

        let dir = tempfile::Builder::new()
            .prefix("devlake-runtime-api-")
            .tempdir()?;
        let log_path = dir.path().join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .envs(LAMBDA_ENV)
            .env("AWS_LAMBDA_RUNTIME_API", &address)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDLOCAL")
            .env("AWS_SECRET_ACCESS_KEY", "local-secret")
            .env("AWS_SESSION_TOKEN", "local-session")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let spawned = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(LambdaProcess {
            name: name.to_string(),
            child,
            spawned,
            shared,
            events: tx,
            first_next,
            timeout,
            log_path,
            _serving: serving,
            _dir: dir,
        })
    }

    /// Waits for the first `next` request and returns the start-up time (spawn → that request).
    pub async fn ready(&mut self, wait: Duration) -> Result<Duration> {
        let mut first = self.first_next.clone();
        let reached = tokio::time::timeout(wait, async {
            tokio::select! {
                seen = first.wait_for(Option::is_some) => Ok(seen.ok().and_then(|s| *s)),
                status = self.child.wait() => Err(status),
            }
        })
        .await;
        match reached {
            Ok(Ok(Some(at))) => Ok(at - self.spawned),
            Ok(Ok(None)) => bail!("{}: the Runtime API stopped", self.name),
            Ok(Err(status)) => bail!(
                "{} exited during start-up ({}){}; log:\n{}",
                self.name,
                status.map(|s| s.to_string()).unwrap_or_default(),
                self.init_error()
                    .map(|e| format!(", init error {e}"))
                    .unwrap_or_default(),
                self.log_tail(40)
            ),
            Err(_) => bail!(
                "{} did not ask for an event within {wait:?}; log:\n{}",
                self.name,
                self.log_tail(40)
            ),
        }
    }

    /// Sends one event and waits for the function's answer (or its deadline plus a second).
    pub async fn invoke(&mut self, payload: &serde_json::Value) -> Result<Invocation> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = format!(
            "bench-{:08}-{}",
            NEXT_ID.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        );
        let (tx, rx) = oneshot::channel();
        self.shared.waiting.lock().unwrap().insert(id.clone(), tx);
        let deadline_ms = (SystemTime::now() + self.timeout)
            .duration_since(UNIX_EPOCH)?
            .as_millis() as u64;
        self.events
            .send(Event {
                id: id.clone(),
                payload: payload.to_string(),
                deadline_ms,
            })
            .map_err(|_| anyhow!("{}: the Runtime API stopped", self.name))?;
        let answered = tokio::time::timeout(self.timeout + Duration::from_secs(1), async {
            tokio::select! {
                answer = rx => answer.map_err(|_| None),
                status = self.child.wait() => Err(status.ok()),
            }
        })
        .await;
        let answer = match answered {
            Ok(Ok(answer)) => answer,
            Ok(Err(status)) => bail!(
                "{} exited during invocation {id} ({}); log:\n{}",
                self.name,
                status.map(|s| s.to_string()).unwrap_or_default(),
                self.log_tail(40)
            ),
            Err(_) => bail!(
                "{}: no answer to {id} within its timeout; log:\n{}",
                self.name,
                self.log_tail(40)
            ),
        };
        let delivered = self
            .shared
            .delivered
            .lock()
            .unwrap()
            .remove(&id)
            .context("an answer to an event that was never handed over")?;
        Ok(Invocation {
            duration: answer.at.saturating_duration_since(delivered),
            outcome: answer.outcome,
        })
    }

    /// The process's peak resident set size so far (`VmHWM`), in kB.
    pub fn peak_rss_kb(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// What the function wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn init_error(&self) -> Option<String> {
        self.shared.init_error.lock().unwrap().clone()
    }

    /// Ends the process (Lambda would freeze it; nothing after the last answer is measured).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn routes(shared: Arc<Shared>, first_next: Arc<watch::Sender<Option<Instant>>>) -> Router {
    Router::new()
        .route(
            "/2018-06-01/runtime/invocation/next",
            get(move |State(shared): State<Arc<Shared>>| {
                let first_next = first_next.clone();
                async move { next(shared, first_next).await }
            }),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(
                |State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: String| async move {
                    answer(&shared, &id, Ok(body))
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/invocation/{id}/error",
            post(
                |State(shared): State<Arc<Shared>>, UrlPath(id): UrlPath<String>, body: String| async move {
                    answer(&shared, &id, Err(body))
                },
            ),
        )
        .route(
            "/2018-06-01/runtime/init/error",
            post(|State(shared): State<Arc<Shared>>, body: String| async move {
                *shared.init_error.lock().unwrap() = Some(body);
                StatusCode::ACCEPTED
            }),
        )
        .with_state(shared)
}

async fn next(shared: Arc<Shared>, first_next: Arc<watch::Sender<Option<Instant>>>) -> Response {
    let at = Instant::now();
    first_next.send_if_modified(|seen| {
        let first = seen.is_none();
        if first {
            *seen = Some(at);
        }
        first
    });
    let mut events = shared.events.lock().await;
    let Some(event) = (match events.as_mut() {
        Some(rx) => rx.recv().await,
        None => None,
    }) else {
        return StatusCode::GONE.into_response();
    };
    shared
        .delivered
        .lock()
        .unwrap()
        .insert(event.id.clone(), Instant::now());
    let mut headers = HeaderMap::new();
    let header = |v: &str| HeaderValue::from_str(v).expect("a plain header value");
    headers.insert("lambda-runtime-aws-request-id", header(&event.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&event.deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header("arn:aws:lambda:us-east-1:123456789012:function:bench"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header("Root=1-00000000-000000000000000000000000;Sampled=0"),
    );
    headers.insert("content-type", header("application/json"));
    (StatusCode::OK, headers, event.payload).into_response()
}

fn answer(shared: &Shared, id: &str, outcome: std::result::Result<String, String>) -> StatusCode {
    let at = Instant::now();
    match shared.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(Answer { at, outcome });
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}
