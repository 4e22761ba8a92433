//! The local stack tests run on: one DynamoDB Local per test process, SDK configuration for local
//! servers, and the table created from its one definition in `template.yaml`.
//!
//! DynamoDB Local is a JVM that takes seconds to start, so a test binary shares one instance. A
//! `static` is never dropped, so the process is tied to the test process instead: it is spawned
//! from a dedicated thread that lives as long as the child, with `PR_SET_PDEATHSIG` (the kernel
//! kills it when that thread — i.e. the test process — goes away, even on SIGKILL), and an
//! `atexit` hook kills it and removes its working directory on a normal exit.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};
use serde_norway::Value;
use tokio::sync::OnceCell;

/// How long DynamoDB Local may take to answer after spawning (it usually needs 3–8 s, more while
/// the two cores are busy compiling).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// Spawn attempts: a free port picked by binding port 0 can be taken again before java binds it.
const SPAWN_ATTEMPTS: usize = 3;

/// The workspace root (the directory holding `template.yaml`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives one level below the workspace root")
        .to_path_buf()
}

/// SDK configuration for a local server: fixed region, dummy static credentials (local servers
/// accept any signature), the endpoint, and explicit timeouts because the SDK has none by default.
/// Nothing is read from the environment or `~/.aws`, so a developer's AWS setup cannot leak in.
pub fn local_sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "AKIDLOCAL",
            "local-secret",
            None,
            None,
            "devlake-testkit",
        )))
        .endpoint_url(endpoint)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .build()
}

/// The CreateTable pieces of an `AWS::DynamoDB::Table` resource, plus its TTL attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDefinition {
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub key_schema: Vec<KeySchemaElement>,
    pub global_secondary_indexes: Vec<GlobalSecondaryIndex>,
    pub local_secondary_indexes: Vec<LocalSecondaryIndex>,
    pub billing_mode: BillingMode,
    pub provisioned_throughput: Option<ProvisionedThroughput>,
    pub stream_specification: Option<StreamSpecification>,
    /// The attribute named by an enabled `TimeToLiveSpecification`.
    pub ttl_attribute: Option<String>,
}

impl TableDefinition {
    /// Creates `table_name` with this definition, waits until it is ACTIVE and enables TTL.
    pub async fn create(&self, client: &aws_sdk_dynamodb::Client, table_name: &str) -> Result<()> {
        client
            .create_table()
            .table_name(table_name)
            .set_attribute_definitions(Some(self.attribute_definitions.clone()))
            .set_key_schema(Some(self.key_schema.clone()))
            .set_global_secondary_indexes(
                (!self.global_secondary_indexes.is_empty())
                    .then(|| self.global_secondary_indexes.clone()),
            )
            .set_local_secondary_indexes(
                (!self.local_secondary_indexes.is_empty())
                    .then(|| self.local_secondary_indexes.clone()),
            )
            .billing_mode(self.billing_mode.clone())
            .set_provisioned_throughput(self.provisioned_throughput.clone())
            .set_stream_specification(self.stream_specification.clone())
            .send()
            .await
            .map_err(|e| anyhow!("CreateTable {table_name}: {}", aws_error_text(&e)))?;

        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = client
                .describe_table()
                .table_name(table_name)
                .send()
                .await
                .map_err(|e| anyhow!("DescribeTable {table_name}: {}", aws_error_text(&e)))?;
            let status = out.table().and_then(|t| t.table_status());
            if status == Some(&TableStatus::Active) {
                break;
            }
            if Instant::now() > deadline {
                bail!("table {table_name} not ACTIVE after 60 s (status {status:?})");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        if let Some(attribute) = &self.ttl_attribute {
            client
                .update_time_to_live()
                .table_name(table_name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(attribute)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await
                .map_err(|e| anyhow!("UpdateTimeToLive {table_name}: {}", aws_error_text(&e)))?;
        }
        Ok(())
    }
}

/// The error's code and message (the SDK's Display says only "service error").
fn aws_error_text<E, R>(err: &aws_sdk_dynamodb::error::SdkError<E, R>) -> String
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown error"),
            service.message().unwrap_or("")
        ),
        None => format!("{err:?}"),
    }
}

/// Parses a CloudFormation template; short-form tags (`!Ref`, `!If`, …) stay tagged values.
pub fn load_template(path: &Path) -> Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_norway::from_str(&text)
        .with_context(|| format!("cannot parse {} as YAML", path.display()))
}

/// Reads `template.yaml` and returns the table definition of `resource`. CloudFormation's
/// short-form tags (`!Ref`, `!GetAtt`, `!Sub`, …) parse as tagged values; a tag inside one of the
/// properties used here is an error (it cannot be evaluated locally).
pub fn table_definition_from_template(path: &Path, resource: &str) -> Result<TableDefinition> {
    let doc = load_template(path)?;
    let res = doc
        .get("Resources")
        .and_then(|r| r.get(resource))
        .ok_or_else(|| anyhow!("{}: no resource {resource}", path.display()))?;
    let kind = res.get("Type").and_then(Value::as_str);
    if kind != Some("AWS::DynamoDB::Table") {
        bail!("{resource}: Type is {kind:?}, expected AWS::DynamoDB::Table");
    }
    let props = res
        .get("Properties")
        .ok_or_else(|| anyhow!("{resource}: no Properties"))?;
    parse_table(props).with_context(|| format!("{}: resource {resource}", path.display()))
}

fn parse_table(props: &Value) -> Result<TableDefinition> {
    let attribute_definitions = seq(props, "AttributeDefinitions")?
        .iter()
        .map(|a| {
            Ok(AttributeDefinition::builder()
                .attribute_name(string(a, "AttributeName")?)
                .attribute_type(ScalarAttributeType::from(string(a, "AttributeType")?))
                .build()?)
        })
        .collect::<Result<Vec<_>>>()
        .context("AttributeDefinitions")?;
    let key_schema = parse_key_schema(props).context("KeySchema")?;
    let billing_mode = match opt(props, "BillingMode") {
        // CloudFormation's default when BillingMode is absent.
        None => BillingMode::Provisioned,
        Some(_) => BillingMode::from(string(props, "BillingMode")?),
    };
    let provisioned_throughput = throughput(props)?;

    let global_secondary_indexes = match opt(props, "GlobalSecondaryIndexes") {
        None => Vec::new(),
        Some(_) => seq(props, "GlobalSecondaryIndexes")?
            .iter()
            .map(|g| {
                Ok(GlobalSecondaryIndex::builder()
                    .index_name(string(g, "IndexName")?)
                    .set_key_schema(Some(parse_key_schema(g)?))
                    .projection(projection(g)?)
                    .set_provisioned_throughput(throughput(g)?)
                    .build()?)
            })
            .collect::<Result<Vec<_>>>()
            .context("GlobalSecondaryIndexes")?,
    };
    let local_secondary_indexes = match opt(props, "LocalSecondaryIndexes") {
        None => Vec::new(),
        Some(_) => seq(props, "LocalSecondaryIndexes")?
            .iter()
            .map(|l| {
                Ok(LocalSecondaryIndex::builder()
                    .index_name(string(l, "IndexName")?)
                    .set_key_schema(Some(parse_key_schema(l)?))
                    .projection(projection(l)?)
                    .build()?)
            })
            .collect::<Result<Vec<_>>>()
            .context("LocalSecondaryIndexes")?,
    };
    let stream_specification = match opt(props, "StreamSpecification") {
        None => None,
        Some(s) => Some(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(string(s, "StreamViewType")?))
                .build()?,
        ),
    };
    let ttl_attribute = match opt(props, "TimeToLiveSpecification") {
        None => None,
        Some(t) => {
            let enabled = match opt(t, "Enabled") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
                None => false,
                Some(other) => bail!("TimeToLiveSpecification.Enabled: unsupported {other:?}"),
            };
            if enabled {
                Some(string(t, "AttributeName")?.to_string())
            } else {
                None
            }
        }
    };

    Ok(TableDefinition {
        attribute_definitions,
        key_schema,
        global_secondary_indexes,
        local_secondary_indexes,
        billing_mode,
        provisioned_throughput,
        stream_specification,
        ttl_attribute,
    })
}

fn opt<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn string<'a>(v: &'a Value, key: &str) -> Result<&'a str> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Tagged(t)) => bail!(
            "{key} uses the intrinsic function {} which cannot be evaluated locally",
            t.tag
        ),
        Some(other) => bail!("{key} must be a string, found {other:?}"),
        None => bail!("{key} is missing"),
    }
}

fn number(v: &Value, key: &str) -> Result<i64> {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| anyhow!("{key}: not an integer")),
        Some(Value::String(s)) => s.parse().with_context(|| format!("{key}: not an integer")),
        other => bail!("{key} must be an integer, found {other:?}"),
    }
}

fn seq<'a>(v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
    v.get(key)
        .and_then(Value::as_sequence)
        .ok_or_else(|| anyhow!("{key} must be a list"))
}

fn parse_key_schema(v: &Value) -> Result<Vec<KeySchemaElement>> {
    seq(v, "KeySchema")?
        .iter()
        .map(|k| {
            Ok(KeySchemaElement::builder()
                .attribute_name(string(k, "AttributeName")?)
                .key_type(KeyType::from(string(k, "KeyType")?))
                .build()?)
        })
        .collect()
}

fn projection(v: &Value) -> Result<Projection> {
    let p = v
        .get("Projection")
        .ok_or_else(|| anyhow!("Projection is missing"))?;
    let non_key = match opt(p, "NonKeyAttributes") {
        None => None,
        Some(_) => Some(
            seq(p, "NonKeyAttributes")?
                .iter()
                .map(|a| {
                    a.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| anyhow!("NonKeyAttributes must be strings"))
                })
                .collect::<Result<Vec<_>>>()?,
        ),
    };
    Ok(Projection::builder()
        .projection_type(ProjectionType::from(string(p, "ProjectionType")?))
        .set_non_key_attributes(non_key)
        .build())
}

fn throughput(v: &Value) -> Result<Option<ProvisionedThroughput>> {
    match opt(v, "ProvisionedThroughput") {
        None => Ok(None),
        Some(t) => Ok(Some(
            ProvisionedThroughput::builder()
                .read_capacity_units(number(t, "ReadCapacityUnits")?)
                .write_capacity_units(number(t, "WriteCapacityUnits")?)
                .build()?,
        )),
    }
}

/// The `StateTable` definition of the workspace's `template.yaml`.
pub fn state_table_definition() -> Result<TableDefinition> {
    table_definition_from_template(&repo_root().join("template.yaml"), "StateTable")
}

/// A running DynamoDB Local shared by the whole test process.
#[derive(Debug)]
pub struct DynamoLocal {
    endpoint: String,
    pid: u32,
}

static DYNAMODB_LOCAL: OnceCell<DynamoLocal> = OnceCell::const_new();
static TABLE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// What the `atexit` hook cleans up.
static CLEANUP: Mutex<Vec<(u32, PathBuf)>> = Mutex::new(Vec::new());

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

/// A new directory under the system temp dir, marked with this process's id. Directories with
/// the same prefix whose owner is gone (a test process killed before its exit hook ran) are
/// removed first, so killed runs do not pile up in /tmp.
pub(crate) fn owned_temp_dir(prefix: &str) -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(prefix) {
                continue;
            }
            let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok());
            if let Some(pid) = owner {
                if !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&tmp)
        .context("cannot create a temporary directory")?
        .keep();
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())?;
    Ok(dir)
}

const OWNER_FILE: &str = ".owner-pid";

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind a free local port")?;
    Ok(listener.local_addr()?.port())
}

/// Asks the kernel to send `signal` to the child when the thread that spawned it dies. The spawning thread
/// is a dedicated one that only returns once the child has exited, so in practice: when the test
/// process dies, however it dies.
pub(crate) fn die_with_parent(cmd: &mut Command, signal: libc::c_int) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: prctl and getppid are async-signal-safe and allocate nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Spawns `cmd` from a thread that waits for it (the child's death signal is tied to that
/// thread), and writes a description of its exit into `exit`. Returns the child's pid.
pub(crate) fn spawn_supervised(mut cmd: Command, exit: Arc<Mutex<Option<String>>>) -> Result<u32> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("supervise-{program}"))
        .spawn(move || match cmd.spawn() {
            Err(e) => {
                let _ = tx.send(Err(e));
            }
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id()));
                let status = child.wait();
                *exit.lock().unwrap() = Some(match status {
                    Ok(s) => s.to_string(),
                    Err(e) => format!("wait failed: {e}"),
                });
            }
        })
        .context("cannot start the supervising thread")?;
    match rx.recv().context("supervising thread vanished")? {
        Ok(pid) => Ok(pid),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("`{program}` not found on PATH; run `bash infra/local/setup.sh`")
        }
        Err(e) => Err(e).with_context(|| format!("cannot start `{program}`")),
    }
}

fn kill(pid: u32) {
    // SAFETY: plain syscall on a pid this process spawned.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

fn register_cleanup(pid: u32, dir: PathBuf) {
    static HOOK: std::sync::Once = std::sync::Once::new();
    CLEANUP.lock().unwrap().push((pid, dir));
    HOOK.call_once(|| {
        // SAFETY: registers a plain extern "C" function.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
}

extern "C" fn cleanup_at_exit() {
    let entries = match CLEANUP.try_lock() {
        Ok(mut guard) => std::mem::take(&mut *guard),
        Err(_) => return,
    };
    for (pid, dir) in entries {
        kill(pid);
        // SAFETY: reaping our own child; WNOHANG-free wait is fine, SIGKILL cannot be ignored.
        unsafe {
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
        }
        let _ = std::fs::remove_dir_all(dir);
    }
}
