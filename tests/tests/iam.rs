//! IAM conformance: every AWS call each function makes, on every code path that touches AWS, is
//! allowed by that function's execution role in `template.yaml`, and every action a role grants
//! is needed by some call (or used by the Lambda platform, see `iam_policy::PLATFORM_ACTIONS`).
//!
//! DynamoDB Local and the doubles enforce no IAM, so the functions run here against them through
//! the recording proxy (`aws_recorder`), one endpoint per function, with the clients their
//! start-up code builds; afterwards each recorded call is authorised against the role the way
//! IAM does (`iam_policy`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use devlake_autopilot::automation::runtime::Automation;
use devlake_autopilot::config::{Env, SecretSource};
use devlake_autopilot::events::EventsFunction;
use devlake_autopilot::metrics_http::{
    http, MetricsService, MetricsSettings, MetricsToken, TOKEN_ARN_VAR, TOKEN_VAR,
};
use devlake_autopilot::monitor::runtime::MonitorFunction;
use devlake_autopilot::monitor::{Deadline, RunStatus, Summary};
use devlake_autopilot::secrets::resolve_named_secret;
use devlake_autopilot::store::DynamoStore;
use devlake_testkit::aws_recorder::{AwsRecorder, Upstreams};
use devlake_testkit::cloudwatch_double::CloudWatchDouble;
use devlake_testkit::iam_policy::{check_template, Deployment};
use devlake_testkit::secrets_manager::LocalSecretsManager;
use devlake_testkit::sim::{devlake_sign, Fixture, SimOptions, Simulator};
use devlake_testkit::stack::{dynamodb_local, local_sdk_config, repo_root};
use serde_json::{json, Value};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
const NAMESPACE: &str = "DevLake/IamTest";
const API_KEY: &str = "dlk-iam-conformance-key-51c2";
const API_KEY_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/api-key-Q1w2E3";
const TOKEN: &str = "iam-conformance-metrics-token-9d4e";
const TOKEN_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/metrics-token-R4t5Y6";
const NOTIFICATION_SECRET: &str = "iam-conformance-notification-secret-3b7a";
const NOTIFICATION_SECRET_ARN: &str =
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake/notification-secret-U7i8O9";
/// The customer-managed key the secrets are encrypted with (Secrets Manager decrypts with the
/// caller's permissions, so the roles need kms:Decrypt through Secrets Manager).
const KMS_KEY_ARN: &str =
    "arn:aws:kms:us-east-1:123456789012:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9";

const FUNCTIONS: [&str; 4] = [
    "AutomationFunction",
    "MonitorFunction",
    "MetricsFunction",
    "EventsFunction",
];

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs.iter().copied().collect()
}

/// The environment of a job that calls DevLake (the automation or the monitor): the simulator
/// over plain HTTP, its API key by secret ARN, the table and the namespace, then `extra`.
fn job_env(endpoint: &str, table: &str, extra: &[(&str, &str)]) -> Env {
    let mut pairs = vec![
        ("DEVLAKE_ENDPOINT", endpoint),
        ("ALLOW_INSECURE_HTTP", "true"),
        ("DEVLAKE_API_KEY_SECRET_ARN", API_KEY_ARN),
        ("TABLE_NAME", table),
        ("CLOUDWATCH_NAMESPACE", NAMESPACE),
    ];
    pairs.extend_from_slice(extra);
    env(&pairs)
}

/// The Lambda deadline of an invocation starting now, in epoch milliseconds.
fn lambda_deadline(budget: Duration) -> u64 {
    (SystemTime::now() + budget)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn monitor_run(
    function: &MonitorFunction,
    payload: Value,
    clock: DateTime<Utc>,
    what: &str,
) -> Summary {
    let summary = function
        .monitor()
        .handle(&payload, clock, Deadline::none())
        .await
        .unwrap_or_else(|e| panic!("monitor {what}: {e}"));
    assert_eq!(
        summary.status,
        RunStatus::Ok,
        "monitor {what}: {summary:#?}"
    );
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aws_call_is_allowed_by_the_function_role_and_every_grant_is_used() {
    let sim = Simulator::start_with(Fixture::sample(), SimOptions::with_api_key(API_KEY)).await;
    let devlake = sim.handle();
    // DevLake checks API keys only under /rest: the key read from Secrets Manager must work.
    let endpoint = format!("{}/rest", sim.url());
    let ddb = dynamodb_local().await;
    let table = ddb.create_table("iam").await;
    let cloudwatch = CloudWatchDouble::start().await;
    let secrets = LocalSecretsManager::start().await;
    secrets.set_string(API_KEY_ARN, API_KEY);
    secrets.set_string(TOKEN_ARN, TOKEN);
    secrets.set_string(NOTIFICATION_SECRET_ARN, NOTIFICATION_SECRET);
    let recorder = AwsRecorder::new(Upstreams {
        dynamodb: Some(ddb.endpoint().to_string()),
        cloudwatch: Some(cloudwatch.url().to_string()),
        secretsmanager: Some(secrets.url().to_string()),
    })
    .unwrap();
    let sdk_of = |function: &'static str| {
        let recorder = &recorder;
        async move { local_sdk_config(&recorder.endpoint(function).await) }
    };

    // --- Automation: start-up (API key by ARN), a scheduled run, a dry run, a rerun action.
    let automation = Automation::from_env_with_sdk(
        &job_env(
            &endpoint,
            &table,
            &[("TRIGGER_GAP_MS", "0"), ("TRIGGER_MAX_PER_RUN", "1000")],
        ),
        &sdk_of("AutomationFunction").await,
    )
    .await
    .unwrap_or_else(|e| panic!("automation start-up: {e}"));
    let invoke = |payload: Value| {
        let automation = &automation;
        async move {
            automation
                .handle_event(
                    &payload,
                    lambda_deadline(Duration::from_secs(900)),
                    Utc::now(),
                    SystemTime::now(),
                )
                .await
                .unwrap_or_else(|e| panic!("automation {payload}: {e}"))
        }
    };
    let scheduled = invoke(json!({"scheduledTime": Utc::now().to_rfc3339()})).await;
    assert_eq!(scheduled["status"], "ok", "{scheduled:#}");
    assert!(scheduled["counts"]["triggered"].as_u64().unwrap() > 2);
    let dry = invoke(json!({"dryRun": true})).await;
    assert_eq!(dry["status"], "ok", "{dry:#}");

    // Two of the triggered pipelines fail, the rest complete; the rerun action re-triggers the
    // failed projects, and those fail again.
    let triggered = devlake.pending_pipelines();
    for (i, id) in triggered.iter().enumerate() {
        let status = if i < 2 {
            "TASK_FAILED"
        } else {
            "TASK_COMPLETED"
        };
        devlake
            .finish_pipeline(*id, status, "collector failed")
            .unwrap();
    }
    let rerun = invoke(json!({"action": "rerun", "failed": true})).await;
    assert_eq!(rerun["counts"]["triggered"], 2, "{rerun:#}");
    devlake
        .finish_all_pending("TASK_FAILED", "failed again")
        .unwrap();

    // --- Metrics: start-up (token by ARN), a scrape before anything is published (the direct
    // read of the PROJECT partition), and, after the monitor's runs, scrapes of the published
    // snapshot (its head and run records, then its chunks).
    let metrics_sdk = sdk_of("MetricsFunction").await;
    let settings = MetricsSettings::from_env(&env(&[
        ("TABLE_NAME", &table),
        ("METRICS_TOKEN_SECRET_ARN", TOKEN_ARN),
    ]))
    .unwrap();
    let SecretSource::SecretArn(arn) = settings.token.clone() else {
        panic!("the token comes from Secrets Manager here");
    };
    let token = resolve_named_secret(TOKEN_VAR, TOKEN_ARN_VAR, None, Some(arn), &metrics_sdk)
        .await
        .unwrap()
        .expect("a token");
    let service = MetricsService::new(
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&metrics_sdk),
            &settings.table_name,
        ),
        MetricsToken::new(token).unwrap(),
        settings.timezone,
        settings.failure_window_days,
    );
    let request = http::Request::builder()
        .uri("/metrics")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(())
        .unwrap();
    let unpublished = service.handle(&request, Utc::now()).await;
    assert_eq!(unpublished.status(), 200);

    // --- Monitor: start-up, first run (with the day's expiry pass), auto-rerun claims, a
    // normal run, a rescan, a dry run, and the first run of a later UTC day that expires
    // failures out of the projects' recent lists.
    // The automation's blueprints run on DevLake's cron, which this simulated DevLake never
    // fires: with their label, the later day's run would flag them all for missed runs and
    // rewrite them in its commits, leaving its expiry pass (and that pass's writes) nothing to
    // do. Another label keeps the schedule checks out of this scenario; they make no AWS call.
    let monitor = MonitorFunction::from_env_with_sdk(
        &job_env(
            &endpoint,
            &table,
            &[
                ("AUTO_RERUN_MAX", "1"),
                ("FAILURE_WINDOW_DAYS", "7"),
                ("MANAGED_LABEL", "not-this-scenario"),
            ],
        ),
        &sdk_of("MonitorFunction").await,
    )
    .await
    .unwrap_or_else(|e| panic!("monitor start-up: {e}"));
    let t0 = Utc::now();
    let first = monitor_run(&monitor, json!({}), t0, "first run").await;
    assert_eq!(first.new_failures, 4, "{first:#?}");
    assert!(
        first.expiry.is_some(),
        "the first run makes the day's expiry pass"
    );
    assert_eq!(first.reruns, 2, "auto-rerun claims: {first:#?}");

    // The re-runs fail: recorded again, and their claims are refused (AUTO_RERUN_MAX=1).
    for id in &first.rerun_pipeline_ids {
        devlake.start_pipeline(*id).unwrap();
        devlake
            .finish_pipeline(*id, "TASK_FAILED", "still failing")
            .unwrap();
    }
    let normal = monitor_run(
        &monitor,
        json!({}),
        t0 + chrono::Duration::seconds(1),
        "normal run",
    )
    .await;
    assert_eq!(normal.new_failures, 2, "{normal:#?}");
    assert_eq!(normal.reruns, 0, "{normal:#?}");
    monitor_run(
        &monitor,
        json!({"rescan": true}),
        t0 + chrono::Duration::seconds(2),
        "rescan",
    )
    .await;
    let dry = monitor_run(
        &monitor,
        json!({"dryRun": true}),
        t0 + chrono::Duration::seconds(3),
        "dry run",
    )
    .await;
    assert!(dry.dry_run);
    // A project deleted in DevLake leaves the table at the next day's first run (DeleteItem).
    let gone = devlake.projects()[0]["name"]
        .as_str()
        .expect("a project name")
        .to_string();
    devlake.delete_project(&gone).unwrap();
    let later = t0 + chrono::Duration::days(8);
    let next_day = monitor_run(&monitor, json!({}), later, "first run of a later day").await;
    let expiry = next_day.expiry.expect("the first run of a UTC day expires");
    assert!(expiry.projects_rewritten >= 2, "{expiry:?}");

    // --- Events: start-up (secret by ARN), then DevLake's notifications of one pipeline of a
    // project the monitor knows: started, failed, the failure again, one without a project,
    // and a request DevLake did not sign.
    let events = EventsFunction::from_env_with_sdk(
        &env(&[
            ("TABLE_NAME", &table),
            ("NOTIFICATION_SECRET_ARN", NOTIFICATION_SECRET_ARN),
        ]),
        &sdk_of("EventsFunction").await,
    )
    .await
    .unwrap_or_else(|e| panic!("events start-up: {e}"));
    let project = devlake.projects()[1]["name"]
        .as_str()
        .expect("a project name")
        .to_string();
    let notification = |project: &str, status: &str, finished: Option<&str>| {
        json!({
            "ProjectName": project, "PipelineID": 900_001,
            "CreatedAt": "2026-11-28T10:00:00Z", "UpdatedAt": finished.unwrap_or("2026-11-28T10:00:05Z"),
            "BeganAt": "2026-11-28T10:00:05Z", "FinishedAt": finished, "Status": status,
        })
        .to_string()
    };
    let deliver = |body: String, signed: bool| {
        let events = &events;
        async move {
            let nonce = "17-AbCdEfGhIjKlMnOp";
            let secret = if signed {
                NOTIFICATION_SECRET
            } else {
                "not-it"
            };
            let request = http::Request::builder()
                .method("POST")
                .uri(format!(
                    "/?nouce={nonce}&sign={}",
                    devlake_sign(&body, secret, nonce)
                ))
                .body(body.into_bytes())
                .unwrap();
            events.service.handle(&request, Utc::now()).await.status()
        }
    };
    let failed = notification(&project, "TASK_FAILED", Some("2026-11-28T10:09:00Z"));
    for (body, signed, expected) in [
        (notification(&project, "TASK_RUNNING", None), true, 200),
        (failed.clone(), true, 200),
        (failed, true, 200),
        (notification("", "TASK_CREATED", None), true, 200),
        (notification(&project, "TASK_COMPLETED", None), false, 401),
    ] {
        assert_eq!(deliver(body, signed).await, expected);
    }

    let page = service.handle(&request, t0).await;
    assert_eq!(page.status(), 200);
    // The stores total the capacity DynamoDB reports (what docs/cost.md is computed from): the
    // scrape only read, the monitor wrote.
    let scraped = service.source().consumed_capacity();
    assert!(
        scraped.read_units > 0.0 && scraped.write_units == 0.0,
        "{scraped:?}"
    );
    assert!(monitor.store.consumed_capacity().write_units > 0.0);

    // --- Every call against the roles.
    let calls = recorder.calls();
    let by_function: BTreeMap<&str, BTreeSet<String>> = FUNCTIONS
        .iter()
        .map(|f| {
            let ops = calls
                .iter()
                .filter(|c| c.function == *f)
                .map(|c| format!("{}:{}", c.service.iam_prefix(), c.operation))
                .collect();
            (*f, ops)
        })
        .collect();
    eprintln!("AWS operations per function: {by_function:#?}");
    // The recorder saw each function's own calls, on the paths this test drives.
    for (function, expected) in [
        (
            "AutomationFunction",
            &[
                "dynamodb:PutItem",
                "cloudwatch:PutMetricData",
                "secretsmanager:GetSecretValue",
            ][..],
        ),
        (
            "MonitorFunction",
            &[
                "dynamodb:Query",
                "dynamodb:TransactWriteItems",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            ][..],
        ),
        (
            "MetricsFunction",
            &[
                "dynamodb:Query",
                "dynamodb:BatchGetItem",
                "secretsmanager:GetSecretValue",
            ][..],
        ),
        (
            "EventsFunction",
            &[
                "dynamodb:BatchGetItem",
                "dynamodb:TransactWriteItems",
                "dynamodb:UpdateItem",
                "secretsmanager:GetSecretValue",
            ][..],
        ),
    ] {
        for op in expected {
            assert!(
                by_function[function].contains(*op),
                "{function} made no {op}: {by_function:#?}"
            );
        }
    }

    // The connections' health: the automation puts `CONNECTION`/`HEALTH` (the PutItem its role
    // already grants for its own items) and the metrics function reads it in the BatchGetItem of
    // the run records; no role needed another action for it.
    let touches = |function: &str, operation: &str| {
        calls.iter().any(|c| {
            c.function == function
                && c.operation == operation
                && c.tables
                    .iter()
                    .any(|t| t.partition_keys.iter().any(|k| k == "CONNECTION"))
        })
    };
    assert!(touches("AutomationFunction", "PutItem"), "{calls:#?}");
    assert!(touches("MetricsFunction", "BatchGetItem"), "{calls:#?}");

    let deployment = Deployment::new(REGION, ACCOUNT, "devlake-autopilot")
        .parameter("DevLakeApiKeySecretArn", API_KEY_ARN)
        .parameter("MetricsTokenSecretArn", TOKEN_ARN)
        .parameter("NotificationSecretArn", NOTIFICATION_SECRET_ARN)
        .parameter("SecretsKmsKeyArn", KMS_KEY_ARN)
        .parameter("CloudWatchNamespace", NAMESPACE)
        .physical("StateTable", &table)
        .secret_key(API_KEY_ARN, KMS_KEY_ARN)
        .secret_key(TOKEN_ARN, KMS_KEY_ARN)
        .secret_key(NOTIFICATION_SECRET_ARN, KMS_KEY_ARN);
    let report = check_template(
        &repo_root().join("template.yaml"),
        &deployment,
        &FUNCTIONS,
        &calls,
    )
    .unwrap();
    assert!(
        report.denied.is_empty(),
        "calls the roles in template.yaml do not allow:\n{}",
        report.denied.join("\n")
    );
    assert!(
        report.unexercised.is_empty(),
        "granted actions no call needed:\n{}",
        report.unexercised.join("\n")
    );
}
