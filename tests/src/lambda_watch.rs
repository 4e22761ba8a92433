//! Runs the workspace's functions under `cargo lambda watch` (the Lambda runtime emulator) so tests
//! exercise the real binaries: their start-up configuration, the runtime API, function URLs.
//!
//! Facts this is built around (docs/development.md): watch serves every binary of the workspace and
//! builds one with `cargo run --bin <fn>` on its first invocation; a function that dies at start-up
//! makes `cargo lambda invoke` wait forever, so every invoke has a timeout and the watch log is
//! read for `command exited`; functions inherit watch's environment and `--env-file`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::process::Command as AsyncCommand;

use crate::stack::{die_with_parent, free_port, owned_temp_dir, repo_root, spawn_supervised};

/// The function binaries of the workspace.
pub const FUNCTIONS: [&str; 4] = [
    "devlake-automation",
    "devlake-monitor",
    "devlake-metrics",
    "devlake-events",
];

/// How long `start` may take: the first build of the function binaries can take minutes.
pub const START_TIMEOUT: Duration = Duration::from_secs(600);
/// Default per-invoke timeout (the first invoke of a function starts it).
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

/// A failed invoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeError {
    /// The function ran and returned an error (a Lambda "function error").
    Function { message: String },
    /// The function process exited (e.g. invalid configuration at start-up); `log` is the tail of
    /// the watch log.
    Exited { log: String },
    /// No answer within the timeout.
    Timeout { after: Duration, log: String },
    /// `cargo lambda invoke` itself failed or printed something that is not JSON.
    Invoke { message: String },
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeError::Function { message } => write!(f, "function error: {message}"),
            InvokeError::Exited { log } => write!(f, "function process exited; watch log:\n{log}"),
            InvokeError::Timeout { after, log } => {
                write!(f, "no answer within {after:?}; watch log:\n{log}")
            }
            InvokeError::Invoke { message } => write!(f, "cargo lambda invoke failed: {message}"),
        }
    }
}

impl std::error::Error for InvokeError {}

/// A running `cargo lambda watch`. Dropping it kills its whole process group (watch, the
/// `cargo run` it starts and the function processes).
pub struct LambdaWatch {
    port: u16,
    pid: u32,
    cargo_lambda: PathBuf,
    log_path: PathBuf,
    exit: Arc<Mutex<Option<String>>>,
    invoke_timeout: Duration,
    dir: PathBuf,
}

impl LambdaWatch {
    /// Builds the function binaries, then starts `cargo lambda watch --invoke-address 127.0.0.1
    /// --invoke-port <free> --env-file <env>` from the repository root and waits until its
    /// runtime server answers. Panics (with the log) if that does not happen within 10 minutes.
    pub async fn start(env: &[(&str, &str)]) -> LambdaWatch {
        match Self::try_start(env).await {
            Ok(w) => w,
            Err(e) => panic!("cannot start cargo lambda watch: {e}"),
        }
    }

    async fn try_start(env: &[(&str, &str)]) -> Result<LambdaWatch, String> {
        let cargo_lambda = find_cargo_lambda()?;
        let dir = owned_temp_dir("devlake-lambda-watch-").map_err(|e| format!("{e:#}"))?;
        let env_path = dir.join("lambda.env");
        let mut env_file = std::fs::File::create(&env_path).map_err(|e| e.to_string())?;
        for (k, v) in env {
            if k.contains(['=', '\n']) || v.contains('\n') {
                return Err(format!(
                    "environment entry {k:?} cannot go into an env file"
                ));
            }
            writeln!(env_file, "{k}={v}").map_err(|e| e.to_string())?;
        }
        drop(env_file);
        let log_path = dir.join("watch.log");
        let started = Instant::now();

        // Build what watch will run (`cargo run --bin <fn>`: only the function packages are
        // selected, so dependency features may differ from the test build's). A cold build takes
        // minutes; doing it here keeps the first invoke within its timeout.
        let log = open_append(&log_path)?;
        let mut build = AsyncCommand::new(cargo());
        build.arg("build");
        for function in FUNCTIONS {
            build.args(["--bin", function]);
        }
        build
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true);
        die_with_parent(build.as_std_mut(), libc::SIGKILL);
        match tokio::time::timeout(START_TIMEOUT, build.status()).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => {
                return Err(format!(
                    "building the functions failed ({status}):\n{}",
                    tail(&read(&log_path), 60)
                ))
            }
            Ok(Err(e)) => return Err(format!("cannot run cargo: {e}")),
            Err(_) => {
                return Err(format!(
                    "building the functions took over {START_TIMEOUT:?}"
                ))
            }
        }

        let port = free_port().map_err(|e| format!("{e:#}"))?;
        let log = open_append(&log_path)?;
        // A shell leads the process group: when the test process dies (even by SIGKILL) the kernel
        // sends it SIGTERM, and it kills the whole group — watch, `cargo run` and the functions.
        let mut cmd = Command::new("bash");
        cmd.args([
            "-c",
            // Watch runs each function's `cargo run` in a session of its own, so the trap also
            // kills the process groups of watch's children.
            r#"trap 'for c in $(pgrep -P $! 2>/dev/null); do kill -KILL -- -$c 2>/dev/null; done; kill -KILL 0' TERM; "$@" & wait $!"#,
            "lambda-watch",
        ])
        .arg(&cargo_lambda)
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", &port.to_string()])
        .arg("--env-file")
        .arg(&env_path)
        // Other engineers edit the tree while tests run; a test must not rebuild mid-way.
        .arg("--ignore-changes")
        .current_dir(repo_root())
        .env("PATH", path_with(&cargo_lambda))
        .env("CARGO_LAMBDA_COLOR", "never")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
        // Its own process group, so Drop can kill watch and everything it started at once.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        die_with_parent(&mut cmd, libc::SIGTERM);
        let exit: Arc<Mutex<Option<String>>> = Arc::default();
        let pid = spawn_supervised(cmd, exit.clone()).map_err(|e| format!("{e:#}"))?;
        register_group(pid);
        let watch = LambdaWatch {
            port,
            pid,
            cargo_lambda,
            log_path,
            exit,
            invoke_timeout: INVOKE_TIMEOUT,
            dir,
        };

        loop {
            if let Some(status) = watch.exit.lock().unwrap().clone() {
                return Err(format!(
                    "cargo lambda watch exited ({status}):\n{}",
                    watch.log()
                ));
            }
            let connect = tokio::time::timeout(
                Duration::from_secs(1),
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
            )
            .await;
            if let Ok(Ok(_)) = connect {
                return Ok(watch);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "cargo lambda watch not listening on {port} after {START_TIMEOUT:?}:\n{}",
                    watch.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The same watch with another per-invoke timeout.
    pub fn with_invoke_timeout(mut self, timeout: Duration) -> Self {
        self.invoke_timeout = timeout;
        self
    }

    /// The port of the runtime emulator (invoke API and function URLs).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Invokes `function` with `payload` through `cargo lambda invoke` and returns its JSON answer.
    pub async fn invoke(
        &self,
        function: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, InvokeError> {
        let log_start = std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0) as usize;
        let mut cmd = AsyncCommand::new(&self.cargo_lambda);
        cmd.args(["lambda", "invoke", function])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &self.port.to_string()])
            .args(["--output-format", "json"])
            .arg("--data-ascii")
            .arg(payload.to_string())
            .current_dir(repo_root())
            .env("CARGO_LAMBDA_COLOR", "never")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        die_with_parent(cmd.as_std_mut(), libc::SIGKILL);
        let child = cmd.spawn().map_err(|e| InvokeError::Invoke {
            message: format!("cannot run {}: {e}", self.cargo_lambda.display()),
        })?;
        let output = child.wait_with_output();
        tokio::pin!(output);

        let deadline = tokio::time::Instant::now() + self.invoke_timeout;
        let output = loop {
            tokio::select! {
                out = &mut output => break out,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    let bytes = std::fs::read(&self.log_path).unwrap_or_default();
                    let new = String::from_utf8_lossy(bytes.get(log_start..).unwrap_or(&[]));
                    let new = new.as_ref();
                    if new.contains("command exited") {
                        return Err(InvokeError::Exited { log: tail(new, 200) });
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(InvokeError::Timeout {
                            after: self.invoke_timeout,
                            log: tail(new, 200),
                        });
                    }
                }
            }
        }
        .map_err(|e| InvokeError::Invoke {
            message: e.to_string(),
        })?;

        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            return Err(invoke_failure(&stdout, &stderr));
        }
        serde_json::from_str(stdout.trim()).map_err(|e| InvokeError::Invoke {
            message: format!("answer is not JSON ({e}): {}", stdout.trim()),
        })
    }

    /// `http://127.0.0.1:N/lambda-url/<function>`; append a path such as `/metrics`.
    pub fn function_url(&self, function: &str) -> String {
        format!("http://127.0.0.1:{}/lambda-url/{function}", self.port)
    }

    /// Everything the builds, watch and the functions have logged so far.
    pub fn log(&self) -> String {
        read(&self.log_path)
    }
}

impl Drop for LambdaWatch {
    fn drop(&mut self) {
        kill_group(self.pid);
        unregister_group(self.pid);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A function error comes back on stderr as the error object the runtime reported
/// (`errorType`/`errorMessage`), wrapped in cargo-lambda's own report.
fn invoke_failure(stdout: &str, stderr: &str) -> InvokeError {
    let text = format!("{stdout}\n{stderr}");
    if let Some(message) = function_error_message(&text) {
        return InvokeError::Function { message };
    }
    InvokeError::Invoke {
        message: text.trim().to_string(),
    }
}

fn function_error_message(text: &str) -> Option<String> {
    // JSON error object, when cargo-lambda prints one.
    for (i, _) in text.match_indices('{') {
        let mut stream =
            serde_json::Deserializer::from_str(&text[i..]).into_iter::<serde_json::Value>();
        if let Some(Ok(v)) = stream.next() {
            if let Some(message) = v.get("errorMessage").and_then(|m| m.as_str()) {
                let kind = v.get("errorType").and_then(|t| t.as_str()).unwrap_or("");
                return Some(if kind.is_empty() {
                    message.to_string()
                } else {
                    format!("{kind}: {message}")
                });
            }
        }
    }
    // Otherwise cargo-lambda's text report:
    //   Error: <errorType>
    //
    //     × <errorMessage, wrapped
    //     │ over several lines>
    //
    //   Was this behavior unexpected? ...
    let mut lines = text.lines().map(str::trim);
    let kind = lines
        .find_map(|l| l.strip_prefix("Error:"))?
        .trim()
        .to_string();
    let mut parts: Vec<String> = Vec::new();
    for line in lines {
        if let Some(first) = line.strip_prefix('×') {
            parts.push(first.trim().to_string());
        } else if let Some(more) = line.strip_prefix('│') {
            if parts.is_empty() {
                break;
            }
            parts.push(more.trim().to_string());
        } else if !parts.is_empty() || !line.is_empty() {
            break;
        }
    }
    let message = parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Some(match (kind.is_empty(), message.is_empty()) {
        (_, true) => kind,
        (true, false) => message,
        (false, false) => format!("{kind}: {message}"),
    })
}

fn read(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn open_append(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn path_with(binary: &Path) -> std::ffi::OsString {
    let mut paths: Vec<PathBuf> = binary.parent().map(Path::to_path_buf).into_iter().collect();
    if let Some(existing) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

/// `cargo-lambda` from PATH, else from the virtualenv `infra/local/setup.sh` installs into.
pub fn find_cargo_lambda() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("cargo-lambda");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let out = Command::new("bash")
        .arg(repo_root().join("infra/local/setup.sh"))
        .arg("--env")
        .output()
        .map_err(|e| format!("cannot run infra/local/setup.sh --env: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("export PATH=") {
            for dir in value.trim_matches('"').split(':') {
                let candidate = Path::new(dir).join("cargo-lambda");
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
    }
    Err("cargo-lambda not found on PATH or in the setup virtualenv; run `bash infra/local/setup.sh`".into())
}

static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Process groups still running at exit are killed by an `atexit` hook (a `LambdaWatch` kept in a
/// `static` is never dropped).
fn register_group(pgid: u32) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    GROUPS.lock().unwrap().push(pgid);
    HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe {
            libc::atexit(kill_groups_at_exit);
        }
    });
}

fn unregister_group(pgid: u32) {
    GROUPS.lock().unwrap().retain(|g| *g != pgid);
}

extern "C" fn kill_groups_at_exit() {
    if let Ok(mut groups) = GROUPS.try_lock() {
        for pgid in std::mem::take(&mut *groups) {
            kill_group(pgid);
        }
    }
}

/// Kills the process group `pgid` this module created, and every process descended from its
/// leader: watch starts each function's `cargo run` in a session of its own, outside the group.
fn kill_group(pgid: u32) {
    let descendants = descendants(pgid);
    // SAFETY: signals only processes this process started (directly or through watch).
    unsafe {
        libc::kill(-(pgid as libc::pid_t), libc::SIGKILL);
        for (pid, group) in descendants {
            if group != pgid {
                libc::kill(-(group as libc::pid_t), libc::SIGKILL);
            }
            libc::kill(pid as libc::pid_t, libc::SIGKILL);
        }
    }
}

/// `(pid, pgid)` of every descendant of `root`, read from /proc.
fn descendants(root: u32) -> Vec<(u32, u32)> {
    let mut table: Vec<(u32, u32, u32)> = Vec::new(); // pid, ppid, pgid
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if let (Some(ppid), Some(pgrp)) = (
                fields.get(1).and_then(|f| f.parse().ok()),
                fields.get(2).and_then(|f| f.parse().ok()),
            ) {
                table.push((pid, ppid, pgrp));
            }
        }
    }
    let mut found: Vec<(u32, u32)> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, pgrp) in &table {
            if ppid == parent && !found.iter().any(|(p, _)| *p == pid) {
                found.push((pid, pgrp));
                frontier.push(pid);
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_error_from_cargo_lambda_text_report() {
        let stderr = "Error: lambda_runtime::deserializer::DeserializeError\n\n  × failed to deserialize the incoming data:\n  │ this function expects a JSON payload\n  │ \n\n  Was this behavior unexpected?\n  Start a thread in https://github.com/cargo-lambda/cargo-lambda/discussions\n";
        assert_eq!(
            invoke_failure("", stderr),
            InvokeError::Function {
                message: "lambda_runtime::deserializer::DeserializeError: failed to deserialize the incoming data: this function expects a JSON payload".into()
            }
        );
    }

    #[test]
    fn function_error_from_json_error_object() {
        let stdout =
            r#"{"errorType":"&str","errorMessage":"invalid payload: unknown field `bogus`"}"#;
        assert_eq!(
            invoke_failure(stdout, ""),
            InvokeError::Function {
                message: "&str: invalid payload: unknown field `bogus`".into()
            }
        );
    }

    #[test]
    fn other_failures_are_invoke_errors() {
        assert!(matches!(
            invoke_failure("", "connection refused"),
            InvokeError::Invoke { .. }
        ));
    }
}
