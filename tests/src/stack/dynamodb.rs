//! One DynamoDB Local per test process.
//!
//! DynamoDB Local is a JVM that takes seconds to start, so a test binary shares one instance. A
//! `static` is never dropped, so the process is tied to the test process instead: it is spawned
//! from a dedicated thread that lives as long as the child, with `PR_SET_PDEATHSIG` (the kernel
//! kills it when that thread — i.e. the test process — goes away, even on SIGKILL), and an
//! `atexit` hook kills it and removes its working directory on a normal exit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::sync::OnceCell;

use super::process::{die_with_parent, kill, owned_temp_dir, register_cleanup, spawn_supervised};
use super::{free_port, local_sdk_config, repo_root, state_table_definition};

/// How long DynamoDB Local may take to answer after spawning (it usually needs 3–8 s, more while
/// the two cores are busy compiling).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Spawn attempts: a free port picked by binding port 0 can be taken again before java binds it.
const SPAWN_ATTEMPTS: usize = 3;

/// A running DynamoDB Local shared by the whole test process.
#[derive(Debug)]
pub struct DynamoLocal {
    endpoint: String,
    pid: u32,
}

static DYNAMODB_LOCAL: OnceCell<DynamoLocal> = OnceCell::const_new();
static TABLE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The process's DynamoDB Local, started on first use. Panics with a hint when Java or the jar is
/// missing.
pub async fn dynamodb_local() -> &'static DynamoLocal {
    DYNAMODB_LOCAL
        .get_or_init(|| async {
            match DynamoLocal::start().await {
                Ok(local) => local,
                Err(e) => panic!("cannot start DynamoDB Local: {e:#}"),
            }
        })
        .await
}

impl DynamoLocal {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The java process id (for tests that check nothing survives).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A new client. Clients are not shared because each `#[tokio::test]` has its own runtime
    /// and a connection pool must not outlive the runtime it was created on.
    pub fn client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&local_sdk_config(&self.endpoint))
    }

    /// Creates a table named `<prefix>-<pid>-<counter>` from `StateTable` in template.yaml,
    /// waits until it is ACTIVE and returns its name. TTL stays off: DynamoDB Local's TTL sweep
    /// deletes items whose `expiresAt` is past by the wall clock, while tests run on fixed dates,
    /// so items would vanish mid-test (a snapshot chunk three days after its fixed publish date,
    /// every failure a month after). Tests assert the `expiresAt` values the code writes, and
    /// treat an expired item's absence by deleting it themselves;
    /// [`create_table_as_deployed`](Self::create_table_as_deployed) turns TTL on as deployed.
    pub async fn create_table(&self, prefix: &str) -> String {
        self.create(prefix, false).await
    }

    /// Like [`create_table`](Self::create_table), with TTL on as the template declares it.
    pub async fn create_table_as_deployed(&self, prefix: &str) -> String {
        self.create(prefix, true).await
    }

    async fn create(&self, prefix: &str, ttl: bool) -> String {
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            TABLE_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut definition = state_table_definition().expect("template.yaml StateTable");
        if !ttl {
            definition.ttl_attribute = None;
        }
        definition
            .create(&self.client(), &name)
            .await
            .unwrap_or_else(|e| panic!("cannot create table {name}: {e:#}"));
        name
    }

    async fn start() -> Result<DynamoLocal> {
        let dir = dynamodb_local_dir()?;
        let mut last_error = None;
        for _ in 0..SPAWN_ATTEMPTS {
            match Self::spawn_and_wait(&dir).await {
                Ok(local) => return Ok(local),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    async fn spawn_and_wait(dir: &Path) -> Result<DynamoLocal> {
        let port = free_port()?;
        // Kept on disk until exit: DynamoDB Local writes its metadata file here.
        let work_dir = owned_temp_dir("devlake-dynamodb-local-")?;
        let log_path = work_dir.join("dynamodb-local.log");
        let log = std::fs::File::create(&log_path)?;

        let mut cmd = Command::new("java");
        cmd.arg(format!(
            "-Djava.library.path={}",
            dir.join("DynamoDBLocal_lib").display()
        ))
        .arg("-jar")
        .arg(dir.join("DynamoDBLocal.jar"))
        // -sharedDb: without it DynamoDB Local keeps one database per access key and region, and a
        // function run with other dummy credentials than the test's would see no tables.
        .args(["-inMemory", "-sharedDb", "-port", &port.to_string()])
        .current_dir(&work_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
        die_with_parent(&mut cmd, libc::SIGKILL);

        let exit: Arc<Mutex<Option<String>>> = Arc::default();
        let pid = spawn_supervised(cmd, exit.clone())?;
        register_cleanup(pid, work_dir.clone());

        let endpoint = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = aws_sdk_dynamodb::Client::new(&local_sdk_config(&endpoint));
        loop {
            if let Some(status) = exit.lock().unwrap().clone() {
                let mut out = String::new();
                let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut out));
                bail!("DynamoDB Local exited ({status}) on port {port}; its output:\n{out}");
            }
            let probe =
                tokio::time::timeout(Duration::from_secs(2), client.list_tables().limit(1).send())
                    .await;
            if let Ok(Ok(_)) = probe {
                tracing::info!(%endpoint, elapsed_ms = started.elapsed().as_millis() as u64, "DynamoDB Local ready");
                return Ok(DynamoLocal { endpoint, pid });
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                kill(pid);
                bail!(
                    "DynamoDB Local did not answer on port {port} within {} s (log: {})",
                    STARTUP_TIMEOUT.as_secs(),
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// Where `DynamoDBLocal.jar` is: `DYNAMODB_LOCAL_DIR`, or what `infra/local/setup.sh --env` says.
pub fn dynamodb_local_dir() -> Result<PathBuf> {
    const HINT: &str = "run `bash infra/local/setup.sh` (installs Java and DynamoDB Local), \
                        or set DYNAMODB_LOCAL_DIR to the directory holding DynamoDBLocal.jar";
    let dir = match std::env::var("DYNAMODB_LOCAL_DIR") {
        Ok(d) if !d.trim().is_empty() => PathBuf::from(d.trim()),
        _ => {
            let script = repo_root().join("infra/local/setup.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg("--env")
                .output()
                .with_context(|| format!("cannot run {}; {HINT}", script.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix("export DYNAMODB_LOCAL_DIR="))
                .map(|v| v.trim().trim_matches('"').to_string())
                .unwrap_or_default();
            if value.is_empty() {
                bail!("DynamoDB Local is not installed; {HINT}");
            }
            PathBuf::from(value)
        }
    };
    if !dir.join("DynamoDBLocal.jar").is_file() {
        bail!("no DynamoDBLocal.jar in {}; {HINT}", dir.display());
    }
    Ok(dir)
}
