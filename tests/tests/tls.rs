//! DevLake over TLS behind a private CA: the simulator serves HTTPS with a leaf certificate for
//! 127.0.0.1 issued by a CA made for this test run, and the jobs trust it only through
//! `DEVLAKE_CA_BUNDLE`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use devlake_autopilot::automation::config::client_config_from_env;
use devlake_autopilot::automation::{self, AutomationConfig, Deadline, Ports};
use devlake_autopilot::config::Env;
use devlake_autopilot::devlake::{DevLakeClient, DevLakeError};
use devlake_testkit::pki::{private_ca, Pki};
use devlake_testkit::sim::{Fixture, SimOptions, Simulator};
use serde_json::json;

async fn https_sim(pki: &Pki) -> Simulator {
    Simulator::start_with(
        Fixture::sample(),
        SimOptions {
            tls: Some(pki.server.clone()),
            ..SimOptions::default()
        },
    )
    .await
}

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().copied().collect()
}

/// The client exactly as the automation builds it from its environment.
fn client(vars: &[(&str, &str)]) -> DevLakeClient {
    let mut config = client_config_from_env(&env(vars), None).expect("configuration accepted");
    config.retry_base_delay = Duration::from_millis(5);
    config.retry_max_delay = Duration::from_millis(20);
    DevLakeClient::new(config).expect("client built")
}

async fn run(client: &DevLakeClient) -> Result<serde_json::Value, automation::AutomationError> {
    let config = AutomationConfig {
        trigger_gap: Duration::ZERO,
        trigger_max_per_run: 1_000,
        ..AutomationConfig::default()
    };
    let ports = Ports {
        devlake: client,
        run_log: None,
        metrics: None,
    };
    let now: DateTime<Utc> = "2026-11-28T11:00:00Z".parse().unwrap();
    automation::handle(
        &config,
        ports,
        &json!({"scheduledTime": "2026-11-28T11:00:00Z"}),
        now,
        Deadline::none(),
    )
    .await
}

#[tokio::test]
async fn with_the_ca_bundle_a_run_works_end_to_end_over_https() {
    let pki = private_ca("devlake-autopilot test CA");
    let sim = https_sim(&pki).await;
    let endpoint = sim.url();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");

    // As PEM text in the variable.
    let devlake = client(&[
        ("DEVLAKE_ENDPOINT", &endpoint),
        ("DEVLAKE_CA_BUNDLE", &pki.ca_pem),
    ]);
    let summary = run(&devlake).await.expect("run over TLS");
    assert_eq!(summary["status"], "ok", "{summary:#}");
    let created = summary["counts"]["projectsCreated"].as_u64().unwrap();
    assert!(created > 0, "{summary:#}");
    assert_eq!(sim.handle().projects().len() as u64, created + 3);

    // As a file, e.g. shipped in the deployment package; other PEM blocks are ignored.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    let other = private_ca("an unrelated CA");
    std::fs::write(&path, format!("{}\n{}", other.ca_pem, pki.ca_pem)).unwrap();
    let devlake = client(&[
        ("DEVLAKE_ENDPOINT", &endpoint),
        ("DEVLAKE_CA_BUNDLE", path.to_str().unwrap()),
    ]);
    devlake.ping().await.expect("trusted through the file");
}

#[tokio::test]
async fn without_the_ca_bundle_the_run_fails_in_one_line_naming_devlake_ca_bundle() {
    let pki = private_ca("devlake-autopilot test CA");
    let sim = https_sim(&pki).await;
    let endpoint = sim.url();

    let devlake = client(&[("DEVLAKE_ENDPOINT", &endpoint)]);
    let err = run(&devlake).await.expect_err("an untrusted certificate");
    let text = err.to_string();
    assert!(text.contains("DEVLAKE_CA_BUNDLE"), "{text}");
    assert!(!text.contains('\n'), "{text}");
    assert_eq!(err.error_type(), "InvalidConfiguration");
    // Not retried: a setting, not DevLake, has to change.
    assert_eq!(sim.handle().counts().total, 0, "no request got through");
    let automation::AutomationError::DevLake { source } = &err else {
        panic!("{err:?}")
    };
    let mut chain = String::new();
    let mut cause: Option<&dyn std::error::Error> = Some(source);
    while let Some(e) = cause {
        chain.push_str(&format!("{e} / "));
        cause = e.source();
    }
    assert!(
        chain.to_lowercase().contains("unknown"),
        "the source is kept: {chain}"
    );

    // A bundle with another CA: the error says the bundle lacks the issuer.
    let other = private_ca("an unrelated CA");
    let devlake = client(&[
        ("DEVLAKE_ENDPOINT", &endpoint),
        ("DEVLAKE_CA_BUNDLE", &other.ca_pem),
    ]);
    match devlake.ping().await {
        Err(e @ DevLakeError::UntrustedCertificate { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("DEVLAKE_CA_BUNDLE (PEM text) does not hold the CA"),
                "{text}"
            );
            assert!(e.is_fatal() && !e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unusable_bundle_or_plain_http_stops_start_up_in_one_line() {
    use devlake_autopilot::automation::runtime::Automation;
    let https = "https://devlake.example.com/api/rest";
    let cert_without_body = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";
    for (vars, names) in [
        (
            vec![
                ("DEVLAKE_ENDPOINT", https),
                ("DEVLAKE_CA_BUNDLE", "/no/such/ca.pem"),
            ],
            vec!["DEVLAKE_CA_BUNDLE", "/no/such/ca.pem"],
        ),
        (
            vec![
                ("DEVLAKE_ENDPOINT", https),
                ("DEVLAKE_CA_BUNDLE", cert_without_body),
            ],
            vec!["DEVLAKE_CA_BUNDLE"],
        ),
        (
            vec![("DEVLAKE_ENDPOINT", "http://127.0.0.1:8080")],
            vec!["DEVLAKE_ENDPOINT", "ALLOW_INSECURE_HTTP"],
        ),
    ] {
        let err = Automation::check_env(&env(&vars)).unwrap_err().to_string();
        assert!(err.starts_with("invalid configuration: "), "{err}");
        for name in names {
            assert!(err.contains(name), "{name} in {err}");
        }
        assert!(!err.contains('\n'), "{err}");
    }
    let pki = private_ca("devlake-autopilot test CA");
    assert_eq!(
        Automation::check_env(&env(&[
            ("DEVLAKE_ENDPOINT", https),
            ("DEVLAKE_CA_BUNDLE", &pki.ca_pem)
        ]))
        .map_err(|e| e.to_string()),
        Ok(())
    );
}
