//! A stateful fake Apache DevLake server over real HTTP, faithful to DevLake's Go source.
//!
//! ```no_run
//! # async fn demo() {
//! use devlake_testkit::sim::{Fixture, Simulator};
//! let sim = Simulator::start(Fixture::sample()).await;
//! let base = sim.url(); // http://127.0.0.1:PORT
//! let handle = sim.handle(); // direct state access / control, cheap to clone
//! # let _ = (base, handle);
//! # }
//! ```
//!
//! The same control surface is exposed over HTTP under `/_sim/...` (see [`control`]) for the
//! standalone `devlake-sim` binary. Control routes are never logged, faulted or authenticated.
//!
//! State is written from DevLake's source (as `serde_json::Value` and the simulator's own
//! structs), deliberately independent of the client's models, so a wrong field name in the
//! client is caught by tests against the simulator.

pub mod control;
mod cron;
pub mod faults;
pub mod fixture;
mod handle;
mod notify;
pub mod plugins;
mod routes;
mod state;
mod time;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, Uri};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

pub use faults::{FaultAction, FaultRule, Faults, MigrationMode, RequestCounts, RequestRecord};
pub use fixture::{Fixture, FixtureProject, GeneratedSpec};
pub use handle::{SimError, SimHandle};
pub use notify::{devlake_sign, NotificationRow, NotificationSettings};
pub use state::{ConnectionTestMode, CronFire, PipelineEnd, PipelineSeed};

use faults::{FaultState, RequestLog};
use state::State;

/// Default `GET /version` answer.
pub const DEFAULT_VERSION: &str = "v1.0.3@sim0000";

/// Finish triggered (and re-run) pipelines by themselves: `TASK_RUNNING` after half of `after`,
/// then `status` after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoComplete {
    pub after: Duration,
    pub status: String,
}

/// Start-up options. `Default` = open API (no key), no latency, no auto-completion.
#[derive(Clone, Default)]
pub struct SimOptions {
    /// When set, `/rest/*` requires `Authorization: Bearer <key>`; plain paths stay open.
    pub api_key: Option<String>,
    /// Fixed latency added to every DevLake request (same as `Faults::latency_ms`).
    pub latency: Duration,
    /// Overrides the fixture's / the default `/version` string.
    pub version: Option<String>,
    /// Overrides the fixture's remote-scope page size (default 100, like GitHub).
    pub remote_page_size: Option<usize>,
    /// Overrides the fixture's auto-complete setting.
    pub auto_complete: Option<AutoComplete>,
    /// Start in 428 "migration pending" mode.
    pub migration_pending: bool,
    /// Seed for the random error rate.
    pub seed: u64,
    /// Port to bind on 127.0.0.1; 0 (default) = a free port.
    pub port: u16,
    /// Maximum number of request records kept (older ones are dropped; counts stay exact).
    /// 0 = default (100,000).
    pub request_log_capacity: usize,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<SimTls>,
    /// DevLake's `NOTIFICATION_ENDPOINT` and `NOTIFICATION_SECRET`: pipeline notifications are
    /// posted there, signed, as DevLake posts them (see [`NotificationSettings`]).
    pub notifications: Option<NotificationSettings>,
}

impl SimOptions {
    /// Options of a DevLake that requires `key` under `/rest` (plain paths stay open), nothing else.
    pub fn with_api_key(key: &str) -> SimOptions {
        SimOptions {
            api_key: Some(key.to_string()),
            ..SimOptions::default()
        }
    }
}

/// The simulator's HTTPS identity: a PEM certificate chain (leaf first) and its PEM private key.
#[derive(Clone)]
pub struct SimTls {
    pub cert_chain_pem: String,
    pub key_pem: String,
}

impl SimTls {
    fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, SimError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SimError::new(format!("TLS certificate chain: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| SimError::new(format!("TLS private key: {e}")))?;
        // The provider is named rather than taken from the process default, which is unset
        // when more than one rustls provider is compiled in.
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|e| SimError::new(format!("TLS configuration: {e}")))?;
        Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
    }
}

impl fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("latency", &self.latency)
            .field("version", &self.version)
            .field("remote_page_size", &self.remote_page_size)
            .field("auto_complete", &self.auto_complete)
            .field("migration_pending", &self.migration_pending)
            .field("seed", &self.seed)
            .field("port", &self.port)
            .field("request_log_capacity", &self.request_log_capacity)
            .field("tls", &self.tls.is_some())
            .field("notifications", &self.notifications)
            .finish()
    }
}

pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) faults: Mutex<FaultState>,
    pub(crate) log: Mutex<RequestLog>,
    /// Changeable at run time, like a key rotated in DevLake.
    pub(crate) api_key: Mutex<Option<String>>,
    pub(crate) auto_complete: Mutex<Option<AutoComplete>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running simulator. Serves until dropped.
pub struct Simulator {
    addr: SocketAddr,
    https: bool,
    handle: SimHandle,
    _shutdown: watch::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Binds 127.0.0.1 on a free port and serves `fixture` in a background task.
    /// Panics if the fixture is inconsistent (use [`Simulator::try_start_with`] to get an error).
    pub async fn start(fixture: Fixture) -> Simulator {
        Self::start_with(fixture, SimOptions::default()).await
    }

    pub async fn start_with(fixture: Fixture, opts: SimOptions) -> Simulator {
        match Self::try_start_with(fixture, opts).await {
            Ok(sim) => sim,
            Err(e) => panic!("devlake simulator failed to start: {e}"),
        }
    }

    pub async fn try_start_with(fixture: Fixture, opts: SimOptions) -> Result<Simulator, SimError> {
        let handle = SimHandle::build(fixture, &opts)?;
        if opts.notifications.is_some() {
            handle.set_notifications(opts.notifications.clone());
        }
        let acceptor = opts.tls.as_ref().map(SimTls::acceptor).transpose()?;
        let listener = TcpListener::bind(("127.0.0.1", opts.port))
            .await
            .map_err(|e| SimError::new(format!("bind 127.0.0.1:{}: {e}", opts.port)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| SimError::new(format!("local_addr: {e}")))?;
        let (tx, rx) = watch::channel(());
        let https = acceptor.is_some();
        let task = tokio::spawn(serve(listener, acceptor, handle.clone(), rx));
        Ok(Simulator {
            addr,
            https,
            handle,
            _shutdown: tx,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://…` when serving TLS (no trailing slash).
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Dropping `_shutdown` ends every connection task; abort the accept loop now.
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    handle: SimHandle,
    shutdown: watch::Receiver<()>,
) {
    let api = routes::router(handle.clone());
    let control = control::router(handle.clone());
    loop {
        let mut stop = shutdown.clone();
        let accepted = tokio::select! {
            _ = stop.changed() => return,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let (h, api, control, mut stop, acceptor) = (
            handle.clone(),
            api.clone(),
            control.clone(),
            shutdown.clone(),
            acceptor.clone(),
        );
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                dispatch(h.clone(), api.clone(), control.clone(), req)
            });
            let http1 = hyper::server::conn::http1::Builder::new();
            let served = async {
                match acceptor {
                    None => {
                        let _ = http1.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    // A client that refuses the certificate ends the handshake; nothing to serve.
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            let _ = http1.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                }
            };
            tokio::select! {
                _ = served => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Returned by the service to make hyper drop the connection without a response.
#[derive(Debug)]
struct ConnectionReset;

impl fmt::Display for ConnectionReset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("simulated connection reset")
    }
}

impl std::error::Error for ConnectionReset {}

const MIGRATION_PENDING_MESSAGE: &str = "\nNew migration scripts detected. Database migration is required to launch DevLake.\nWARNING: Performing migration may wipe collected data for consistency and re-collecting data may be required.\nTo proceed, please send a request to <config-ui-endpoint>/api/proceed-db-migration (or <devlake-endpoint>/proceed-db-migration).\nAlternatively, you may downgrade back to the previous DevLake version.\n";
const MIGRATION_RUNNING_MESSAGE: &str =
    "Database migration is in progress. Please wait until it is completed.";

async fn dispatch(
    h: SimHandle,
    api: Router,
    control: Router,
    req: Request<Incoming>,
) -> Result<Response<Body>, ConnectionReset> {
    let mut req = req.map(Body::new);
    let raw_path = req.uri().path().to_string();
    if raw_path == "/_sim" || raw_path.starts_with("/_sim/") {
        return Ok(control.oneshot(req).await.unwrap_or_else(|e| match e {}));
    }
    let method = req.method().as_str().to_string();
    let logged_path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| raw_path.clone());
    let (under_rest, path) = match raw_path.strip_prefix("/rest") {
        Some("") => (true, "/".to_string()),
        Some(r) if r.starts_with('/') => (true, r.to_string()),
        _ => (false, raw_path.clone()),
    };

    let decision = lock(&h.inner.faults).decide(&method, &path);
    if !decision.delay_before.is_zero() {
        tokio::time::sleep(decision.delay_before).await;
    }
    if decision.reset {
        h.record(&method, &logged_path, 0);
        return Err(ConnectionReset);
    }
    let resp = if let Some((status, location)) = &decision.redirect {
        routes::redirect_response(*status, location)
    } else if let Some(bytes) = decision.large_body {
        routes::padded_response(bytes)
    } else if let Some(status) = decision.status {
        let mut resp = routes::error_response(status, "simulated fault", serde_json::Value::Null);
        if let Some(value) = decision
            .retry_after
            .as_deref()
            .and_then(|v| axum::http::HeaderValue::from_str(v).ok())
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        resp
    } else if let Some(resp) = migration_gate(&h, &path) {
        resp
    } else if let Some(resp) = under_rest.then(|| api_key_check(&h, &req)).flatten() {
        resp
    } else {
        if under_rest {
            let pq = match req.uri().query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            match pq.parse::<Uri>() {
                Ok(uri) => *req.uri_mut() = uri,
                Err(_) => return Ok(routes::plain_not_found()),
            }
        }
        api.oneshot(req).await.unwrap_or_else(|e| match e {})
    };
    if !decision.delay_after.is_zero() {
        tokio::time::sleep(decision.delay_after).await;
    }
    h.record(&method, &logged_path, resp.status().as_u16());
    Ok(resp)
}

fn migration_gate(h: &SimHandle, path: &str) -> Option<Response<Body>> {
    if matches!(
        path,
        "/ping" | "/ready" | "/health" | "/version" | "/proceed-db-migration"
    ) {
        return None;
    }
    let message = match lock(&h.inner.faults).faults.migration {
        MigrationMode::None => return None,
        MigrationMode::Pending => MIGRATION_PENDING_MESSAGE,
        MigrationMode::Running => MIGRATION_RUNNING_MESSAGE,
    };
    Some(routes::error_response(
        428,
        message,
        serde_json::Value::Null,
    ))
}

/// DevLake's key check: `/rest/*` needs `Authorization: Bearer <key>` when a key is configured.
fn api_key_check(h: &SimHandle, req: &Request<Body>) -> Option<Response<Body>> {
    let key = lock(&h.inner.api_key).clone()?;
    let fail = |status: u16, message: &str| {
        Some(routes::json_response(
            status,
            &serde_json::json!({"success": false, "message": message}),
        ))
    };
    let Some(header) = req.headers().get(axum::http::header::AUTHORIZATION) else {
        return fail(401, "token is missing");
    };
    let Some(token) = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
    else {
        return fail(401, "token is not present or malformed");
    };
    if token != key.as_str() {
        return fail(403, "api key is invalid");
    }
    None
}
