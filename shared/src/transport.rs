//! One HTTP stack for everything a function calls: reqwest over rustls with the *ring* crypto
//! provider, for DevLake and, through [`AwsHttpClient`], for the AWS SDK.
//!
//! Why not the SDK's own HTTPS client: it is a second hyper/rustls stack that brings aws-lc (about
//! 2 MB of every binary, a long C build, and a jitter-entropy seeding that cost ~0.8 s on the first
//! TLS call unless turned off at build time) and loads the system's trust roots again on its first
//! call. Here the roots are read and parsed once per process ([`system_roots`], from the
//! distribution's bundle file) and each client gets them with any extra CA (`DEVLAKE_CA_BUNDLE`)
//! added.
//!
//! Clients are built on their first request ([`LazyClient`]), not at start-up: parsing the
//! system's ~150 CA certificates is about a third of a function's init time, and an
//! invocation's first request needs a TLS handshake anyway. What can be wrong in the settings
//! (an extra CA that is not a usable trust anchor) is still refused at start-up.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// The CA bundle files of the common Linux distributions, looked for in this order as Go's
/// crypto/x509 does. Lambda's `provided.al2023` image has the Fedora/RHEL one.
const BUNDLE_FILES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system's CA certificates: the distribution's bundle file alone when there is one, not
/// also every file of the certificate directories (the same certificates again, one file each:
/// hundreds of reads on some systems). `SSL_CERT_FILE` / `SSL_CERT_DIR`, when set, are honoured
/// as OpenSSL honours them.
fn load_system_certs() -> rustls_native_certs::CertificateResult {
    let configured = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if !configured {
        let bundle = BUNDLE_FILES
            .iter()
            .map(std::path::Path::new)
            .find(|p| p.is_file());
        if let Some(file) = bundle {
            let found = rustls_native_certs::load_certs_from_paths(Some(file), None);
            if !found.certs.is_empty() {
                return found;
            }
        }
    }
    rustls_native_certs::load_native_certs()
}

/// The system's trust roots (the Lambda image's CA bundle), read on first use and kept for the
/// life of the process. Unreadable or unparsable certificates are skipped, as every TLS client
/// does; with none at all, only extra roots can be trusted.
pub fn system_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = load_system_certs();
        let mut store = RootCertStore::empty();
        let (_added, ignored) = store.add_parsable_certificates(found.certs);
        if ignored > 0 || !found.errors.is_empty() {
            tracing::warn!(
                ignored,
                errors = found.errors.len(),
                "some system CA certificates could not be used"
            );
        }
        if store.is_empty() {
            tracing::warn!("no system CA certificates found: only DEVLAKE_CA_BUNDLE is trusted");
        }
        Arc::new(store)
    })
}

/// TLS settings for a client: TLS 1.2 and 1.3 with ring, the system roots plus `extra`
/// (each checked to be a usable trust anchor), HTTP/1.1 announced by ALPN.
pub fn tls_config(
    extra: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, rustls::Error> {
    let roots = if extra.is_empty() {
        Arc::clone(system_roots())
    } else {
        let mut store = RootCertStore::clone(system_roots());
        for root in extra {
            store.add(root.clone())?;
        }
        Arc::new(store)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// What a [`LazyClient`] is built with.
#[derive(Debug, Clone, Default)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
    /// Trusted besides the system's roots (`DEVLAKE_CA_BUNDLE`).
    pub extra_roots: Vec<CertificateDer<'static>>,
    pub user_agent: Option<&'static str>,
}

/// A reqwest client over [`tls_config`], HTTP/1.1 only, following no redirect, built on its
/// first use and shared by every clone afterwards.
#[derive(Debug, Clone)]
pub struct LazyClient {
    settings: Arc<ClientSettings>,
    client: Arc<OnceLock<reqwest::Client>>,
}

impl LazyClient {
    /// Refuses extra roots that are not usable trust anchors now (at start-up), so that building
    /// the client later cannot fail on them; reads nothing else.
    pub fn new(settings: ClientSettings) -> Result<Self, rustls::Error> {
        let mut check = RootCertStore::empty();
        for root in &settings.extra_roots {
            check.add(root.clone())?;
        }
        Ok(LazyClient {
            settings: Arc::new(settings),
            client: Arc::new(OnceLock::new()),
        })
    }

    /// The client, built (system roots read, TLS configured) on the first call.
    pub fn get(&self) -> Result<&reqwest::Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let built = self.build()?;
        // Two first requests at once may both build; one client is kept.
        Ok(self.client.get_or_init(|| built))
    }

    fn build(&self) -> Result<reqwest::Client, String> {
        let tls = tls_config(&self.settings.extra_roots).map_err(|e| e.to_string())?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.settings.connect_timeout)
            .tls_backend_preconfigured(tls)
            .http1_only()
            // Never followed: a redirect from DevLake would carry its API key elsewhere, and
            // the SDK decides about AWS's (AWS APIs answer none).
            .redirect(reqwest::redirect::Policy::none());
        if let Some(agent) = self.settings.user_agent {
            builder = builder.user_agent(agent);
        }
        builder.build().map_err(|e| e.to_string())
    }
}

/// The AWS SDK's HTTP client: requests go through one reqwest client (pooled connections, the
/// shared TLS settings). The SDK applies its attempt and operation timeouts around each call;
/// the connect timeout is this client's, given when it is built.
#[derive(Debug, Clone)]
pub struct AwsHttpClient {
    http: LazyClient,
}

impl AwsHttpClient {
    /// Builds nothing yet (see [`LazyClient`]).
    pub fn new(connect_timeout: Duration) -> Self {
        let http = LazyClient::new(ClientSettings {
            connect_timeout,
            ..ClientSettings::default()
        })
        .expect("no extra roots to refuse");
        AwsHttpClient { http }
    }

    /// As the SDK takes it.
    pub fn shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }
}

impl HttpClient for AwsHttpClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(AwsConnector {
            http: self.http.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

#[derive(Debug)]
struct AwsConnector {
    http: LazyClient,
    read_timeout: Option<Duration>,
}

impl HttpConnector for AwsConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self
            .http
            .get()
            .cloned()
            .map_err(|e| ConnectorError::other(format!("HTTP client: {e}").into(), None));
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let http = http?;
            let request = to_reqwest(&http, request, read_timeout)?;
            let response = http.execute(request).await.map_err(connector_error)?;
            from_reqwest(response).await
        })
    }
}

fn to_reqwest(
    http: &reqwest::Client,
    request: HttpRequest,
    read_timeout: Option<Duration>,
) -> Result<reqwest::Request, ConnectorError> {
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| ConnectorError::user(e.into()))?;
    // Every operation these functions call sends its body from memory; a streaming body would
    // need a reader this client does not have.
    let body = request
        .body()
        .bytes()
        .ok_or_else(|| ConnectorError::user("streaming request bodies are not supported".into()))?
        .to_vec();
    let mut builder = http.request(method, request.uri());
    for (name, value) in request.headers().iter_bytes() {
        builder = builder.header(name, value);
    }
    if let Some(timeout) = read_timeout {
        builder = builder.timeout(timeout);
    }
    builder
        .body(body)
        .build()
        .map_err(|e| ConnectorError::user(e.into()))
}

async fn from_reqwest(mut response: reqwest::Response) -> Result<HttpResponse, ConnectorError> {
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    let body = response.bytes().await.map_err(connector_error)?;
    let mut out = HttpResponse::new(
        status
            .try_into()
            .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                ConnectorError::other(e.into(), None)
            })?,
        SdkBody::from(body),
    );
    for (name, value) in &headers {
        out.headers_mut().append(name.clone(), value.clone());
    }
    Ok(out)
}

/// The SDK's retry policy reads the kind: timeouts and I/O failures are transient.
fn connector_error(e: reqwest::Error) -> ConnectorError {
    if e.is_timeout() {
        ConnectorError::timeout(e.into())
    } else if e.is_connect() || e.is_request() || e.is_body() {
        ConnectorError::io(e.into())
    } else {
        ConnectorError::other(e.into(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lazy_client_refuses_bad_extra_roots_at_once_and_builds_on_first_use() {
        let bad = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(LazyClient::new(ClientSettings {
            extra_roots: vec![bad],
            ..ClientSettings::default()
        })
        .is_err());
        let lazy = LazyClient::new(ClientSettings::default()).unwrap();
        assert!(
            lazy.client.get().is_none(),
            "nothing built before the first use"
        );
        let first: *const reqwest::Client = lazy.get().unwrap();
        let clone = lazy.clone();
        assert!(
            std::ptr::eq(first, clone.get().unwrap()),
            "one client for all clones"
        );
    }

    #[test]
    fn the_system_roots_are_read_once_and_extra_roots_must_be_trust_anchors() {
        // Every supported build and CI image has a CA bundle.
        let roots = system_roots();
        assert!(!roots.is_empty());
        assert!(std::ptr::eq(roots, system_roots()), "read once");

        let config = tls_config(&[]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Not a certificate: refused, rather than silently trusting less than asked.
        assert!(tls_config(&[CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])]).is_err());
    }
}
