//! The deployment contract of `template.yaml` (design.md §2, §3, §7; issue 6): the three Rust
//! functions built by cargo-lambda, the schedules, the metrics URL, the table, the secrets and
//! least-privilege IAM. The tools' own checks (cfn-lint, `sam validate --lint`, `sam build`) run
//! in `infra/local/test.sh`; this file checks what those tools cannot know we promised.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use devlake_testkit::stack::{repo_root, table_definition_from_template};
use serde_json::{json, Value};

/// The template as JSON, with CloudFormation's short-form tags (`!Ref X`, `!GetAtt A.B`, `!Sub`,
/// `!If`, …) rewritten to their long form, so checks see one spelling.
fn template() -> Value {
    let path = template_path();
    let text = std::fs::read_to_string(&path).expect("read template.yaml");
    let yaml: serde_norway::Value = serde_norway::from_str(&text).expect("template.yaml is YAML");
    to_json(yaml)
}

fn template_path() -> PathBuf {
    repo_root().join("template.yaml")
}

fn to_json(v: serde_norway::Value) -> Value {
    use serde_norway::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                json!(i)
            } else {
                json!(n.as_f64().expect("YAML number"))
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => panic!("non-string mapping key {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let tag = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            match tag {
                "Ref" => json!({ "Ref": inner }),
                "Condition" => json!({ "Condition": inner }),
                "GetAtt" => {
                    let parts = match inner {
                        Value::String(s) => {
                            let (resource, attribute) =
                                s.split_once('.').expect("!GetAtt Resource.Attribute");
                            json!([resource, attribute])
                        }
                        other => other,
                    };
                    json!({ "Fn::GetAtt": parts })
                }
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().expect("Resources")
}

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    t["Resources"]
        .get(name)
        .unwrap_or_else(|| panic!("resource {name} is missing"))
}

fn ref_to(name: &str) -> Value {
    json!({ "Ref": name })
}

fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

/// The default of the parameter `value` refers to, or `value` itself when it is a literal.
fn resolved<'a>(t: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("Ref").and_then(Value::as_str) {
        Some(name) if t["Parameters"].get(name).is_some() => {
            let default = &t["Parameters"][name]["Default"];
            assert!(!default.is_null(), "parameter {name} has no Default");
            default
        }
        _ => value,
    }
}

/// Every value a possibly conditional expression can take: both branches of `Fn::If`, without
/// `AWS::NoValue`, with lists flattened.
fn alternatives(v: &Value) -> Vec<&Value> {
    if let Some(branches) = v.get("Fn::If").and_then(Value::as_array) {
        assert_eq!(
            branches.len(),
            3,
            "Fn::If takes [condition, then, else]: {v}"
        );
        return branches[1..].iter().flat_map(alternatives).collect();
    }
    if v == &ref_to("AWS::NoValue") {
        return Vec::new();
    }
    if let Some(items) = v.as_array() {
        return items.iter().flat_map(alternatives).collect();
    }
    vec![v]
}

/// (logical id, binary name, CodeUri) of the three functions.
const FUNCTIONS: [(&str, &str, &str); 3] = [
    (
        "AutomationFunction",
        "devlake-automation",
        "functions/automation",
    ),
    ("MonitorFunction", "devlake-monitor", "functions/monitor"),
    ("MetricsFunction", "devlake-metrics", "functions/metrics"),
];

#[test]
fn the_three_functions_are_rust_binaries_built_by_cargo_lambda_for_al2023() {
    let t = template();
    let serverless: BTreeSet<&str> = resources(&t)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        serverless,
        FUNCTIONS.iter().map(|f| f.0).collect::<BTreeSet<_>>(),
        "exactly the three functions"
    );

    let arch = &t["Parameters"]["Architecture"];
    assert_eq!(arch["Default"], "arm64");
    assert_eq!(arch["AllowedValues"], json!(["arm64", "x86_64"]));

    for (name, binary, code_uri) in FUNCTIONS {
        let f = resource(&t, name);
        assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda", "{name}");
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], binary, "{name}");
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023", "{name}");
        assert_eq!(p["Handler"], "bootstrap", "{name}");
        assert_eq!(
            p["Architectures"],
            json!([ref_to("Architecture")]),
            "{name}"
        );
        assert_eq!(
            p["MemorySize"], 512,
            "{name}: 512 MB unless a measurement says otherwise"
        );
        assert_eq!(p["CodeUri"], code_uri, "{name}");

        // SAM runs `cargo lambda build --bin <Binary>` in CodeUri: that package must define it.
        let manifest = std::fs::read_to_string(repo_root().join(code_uri).join("Cargo.toml"))
            .unwrap_or_else(|e| panic!("{name}: {code_uri}/Cargo.toml: {e}"));
        assert!(
            manifest.contains("[[bin]]") && manifest.contains(&format!("name = \"{binary}\"")),
            "{code_uri}/Cargo.toml must define the binary {binary}"
        );

        // The function name defaults to the binary name, so `cargo lambda deploy` finds it.
        let fn_name = &p["FunctionName"]["Fn::Sub"];
        let suffix = binary.trim_start_matches("devlake");
        assert_eq!(
            fn_name,
            &json!(format!("${{FunctionNamePrefix}}{suffix}")),
            "{name}"
        );
        assert_eq!(t["Parameters"]["FunctionNamePrefix"]["Default"], "devlake");

        // Its log group exists with a retention, under the name Lambda writes to.
        let log_group = p_log_group(&t, name);
        assert_eq!(
            log_group["Properties"]["LogGroupName"]["Fn::Sub"],
            json!(format!("/aws/lambda/${{FunctionNamePrefix}}{suffix}")),
            "{name}"
        );
        let retention = resolved(&t, &log_group["Properties"]["RetentionInDays"]);
        assert!(
            retention.as_i64().is_some_and(|d| d > 0),
            "{name}: retention {retention}"
        );
    }

    let timeout = |name: &str| {
        resource(&t, name)["Properties"]["Timeout"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(
        timeout("AutomationFunction"),
        900,
        "paced triggering needs the maximum"
    );
    assert!(
        (60..=300).contains(&timeout("MonitorFunction")),
        "the monitor must finish well inside its 5-minute period"
    );
    assert!(
        timeout("MetricsFunction") <= 10,
        "Prometheus' scrape timeout is 10 s"
    );
}

/// The log group a function writes to (its `LoggingConfig.LogGroup`).
fn p_log_group<'a>(t: &'a Value, function: &str) -> &'a Value {
    let logging = &resource(t, function)["Properties"]["LoggingConfig"];
    assert_eq!(logging["LogFormat"], "JSON", "{function}: structured logs");
    let name = logging["LogGroup"]["Ref"]
        .as_str()
        .unwrap_or_else(|| panic!("{function}: LoggingConfig.LogGroup refers to its log group"));
    let group = resource(t, name);
    assert_eq!(group["Type"], "AWS::Logs::LogGroup", "{function}: {name}");
    group
}

#[test]
fn schedules_run_in_the_configured_time_zone_with_the_scheduler_input() {
    let t = template();
    let expected = [
        ("AutomationFunction", "cron(0 18 * * ? *)"),
        ("MonitorFunction", "rate(5 minutes)"),
    ];
    for (name, expression) in expected {
        let events = resource(&t, name)["Properties"]["Events"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has Events"));
        let schedules: Vec<&Value> = events
            .values()
            .filter(|e| e["Type"] == "ScheduleV2")
            .collect();
        assert_eq!(
            schedules.len(),
            1,
            "{name}: one EventBridge Scheduler schedule"
        );
        assert_eq!(events.len(), 1, "{name}: no other event sources");
        let s = &schedules[0]["Properties"];
        assert_eq!(resolved(&t, &s["ScheduleExpression"]), expression, "{name}");
        assert_eq!(
            resolved(&t, &s["ScheduleExpressionTimezone"]),
            "Asia/Ho_Chi_Minh",
            "{name}"
        );
        assert!(
            s["ScheduleExpression"].get("Ref").is_some()
                && s["ScheduleExpressionTimezone"].get("Ref").is_some(),
            "{name}: expression and time zone are parameters"
        );
        assert_eq!(s["FlexibleTimeWindow"]["Mode"], "OFF", "{name}");
        let retry = &s["RetryPolicy"];
        assert!(
            retry["MaximumRetryAttempts"]
                .as_i64()
                .is_some_and(|n| n > 0),
            "{name}"
        );
        assert!(
            retry["MaximumEventAgeInSeconds"]
                .as_i64()
                .is_some_and(|n| n >= 60),
            "{name}"
        );

        let dlq = s["DeadLetterConfig"]["Arn"]["Fn::GetAtt"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: DeadLetterConfig.Arn is a queue's GetAtt Arn"));
        assert_eq!(dlq[1], "Arn");
        assert_eq!(
            resource(&t, dlq[0].as_str().unwrap())["Type"],
            "AWS::SQS::Queue"
        );

        let input: Value = serde_json::from_str(s["Input"].as_str().expect("Input string"))
            .expect("Input is JSON");
        assert_eq!(
            input,
            json!({"scheduledTime": "<aws.scheduler.scheduled-time>"}),
            "{name}"
        );
    }

    let monitor = &resource(&t, "MonitorFunction")["Properties"];
    assert_eq!(monitor["ReservedConcurrentExecutions"], 1);
    assert!(
        resource(&t, "MetricsFunction")["Properties"]
            .get("Events")
            .is_none(),
        "the metrics function is only reached through its URL"
    );
}

#[test]
fn metrics_function_url_has_no_iam_auth_and_is_a_stack_output() {
    let t = template();
    for (name, _, _) in FUNCTIONS {
        let url = &resource(&t, name)["Properties"]["FunctionUrlConfig"];
        if name == "MetricsFunction" {
            assert_eq!(
                url["AuthType"], "NONE",
                "the handler checks the bearer token itself"
            );
        } else {
            assert!(url.is_null(), "{name} must not have a function URL");
        }
    }
    // SAM names the generated AWS::Lambda::Url `<function>Url`.
    let url = get_att("MetricsFunctionUrl", "FunctionUrl");
    let outputs = t["Outputs"].as_object().expect("Outputs");
    assert!(
        outputs.values().any(|o| o["Value"] == url),
        "an Output's Value is the metrics function URL"
    );
}

#[test]
fn the_table_is_on_demand_with_ttl_point_in_time_recovery_and_deletion_protection() {
    let t = template();
    let tables: Vec<&String> = resources(&t)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::DynamoDB::Table")
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        tables,
        ["StateTable"],
        "the only place the table is defined"
    );

    // What the tests and the demo create locally (same parser they use).
    let def = table_definition_from_template(&template_path(), "StateTable").unwrap();
    assert_eq!(def.ttl_attribute.as_deref(), Some("expiresAt"));
    assert_eq!(def.billing_mode.as_str(), "PAY_PER_REQUEST");
    let keys: Vec<(&str, &str)> = def
        .key_schema
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().as_str()))
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);

    let table = resource(&t, "StateTable");
    let p = &table["Properties"];
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(table["DeletionPolicy"], "Retain");
    let protection = &p["DeletionProtectionEnabled"];
    let param = protection["Ref"]
        .as_str()
        .expect("deletion protection is a parameter");
    assert_eq!(
        t["Parameters"][param]["AllowedValues"],
        json!(["true", "false"])
    );
    assert_eq!(t["Parameters"][param]["Default"], "true");
}

/// One statement of an IAM policy, with the resource that holds it.
struct Statement<'a> {
    owner: String,
    body: &'a Value,
}

impl<'a> Statement<'a> {
    fn actions(&self) -> Vec<&'a str> {
        strings(&self.body["Action"])
    }
    fn resources(&self) -> Vec<&'a Value> {
        alternatives(&self.body["Resource"])
    }
}

fn strings(v: &Value) -> Vec<&str> {
    alternatives(v)
        .into_iter()
        .map(|a| {
            a.as_str()
                .unwrap_or_else(|| panic!("expected a string, found {a}"))
        })
        .collect()
}

/// Every statement of every inline policy and policy resource in the template (both branches
/// of conditional statements).
fn statements(t: &Value) -> Vec<Statement<'_>> {
    let mut out = Vec::new();
    for (name, r) in resources(t) {
        let ty = r["Type"].as_str().unwrap_or_default();
        let docs: Vec<&Value> = match ty {
            "AWS::IAM::Role" | "AWS::IAM::User" | "AWS::IAM::Group" => {
                assert!(
                    r["Properties"].get("ManagedPolicyArns").is_none(),
                    "{name}: managed policies are not scoped to this stack's resources"
                );
                r["Properties"]["Policies"]
                    .as_array()
                    .map(|ps| ps.iter().map(|p| &p["PolicyDocument"]).collect())
                    .unwrap_or_default()
            }
            "AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy" => {
                vec![&r["Properties"]["PolicyDocument"]]
            }
            "AWS::Serverless::Function" => {
                assert!(
                    r["Properties"].get("Policies").is_none(),
                    "{name}: permissions live in its explicit role, not SAM policy templates"
                );
                Vec::new()
            }
            _ => Vec::new(),
        };
        for doc in docs {
            for s in alternatives(&doc["Statement"]) {
                out.push(Statement {
                    owner: name.clone(),
                    body: s,
                });
            }
        }
    }
    out
}

#[test]
fn every_iam_statement_is_scoped() {
    let t = template();
    let all = statements(&t);
    assert!(
        all.len() >= 9,
        "roles and their statements were found ({})",
        all.len()
    );
    for s in &all {
        let owner = &s.owner;
        assert_eq!(s.body["Effect"], "Allow", "{owner}: only Allow statements");
        for forbidden in ["NotAction", "NotResource"] {
            assert!(
                s.body.get(forbidden).is_none(),
                "{owner}: {forbidden} is never scoped"
            );
        }
        let actions = s.actions();
        assert!(!actions.is_empty(), "{owner}: statement without actions");
        for action in &actions {
            assert!(!action.contains('*'), "{owner}: wildcard action {action}");
            assert!(
                !action.starts_with("dynamodb:Transact"),
                "{owner}: {action} is not an IAM action; transactions are authorised per item"
            );
        }
        let resources = s.resources();
        assert!(
            !resources.is_empty(),
            "{owner}: statement without resources"
        );
        for resource in resources {
            if resource.as_str().is_some_and(|r| r.contains('*')) {
                assert_eq!(
                    resource, "*",
                    "{owner}: a partial wildcard resource ({resource}) is not scoped"
                );
                assert_eq!(
                    actions,
                    ["cloudwatch:PutMetricData"],
                    "{owner}: only PutMetricData may use Resource *"
                );
                assert_eq!(
                    s.body["Condition"],
                    json!({"StringEquals": {"cloudwatch:namespace": ref_to("CloudWatchNamespace")}}),
                    "{owner}: PutMetricData is limited to the configured namespace"
                );
            }
        }
    }
}

/// The statements of a function's execution role.
fn role_statements<'a>(t: &'a Value, function: &str) -> Vec<Statement<'a>> {
    let role = resource(t, function)["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{function}: Role is an execution role of this template"));
    assert_eq!(resource(t, role)["Type"], "AWS::IAM::Role");
    statements(t)
        .into_iter()
        .filter(|s| s.owner == role)
        .collect()
}

/// Actions of `service` the role grants, each with the resources it is granted on.
fn grants<'a>(statements: &[Statement<'a>], service: &str) -> BTreeMap<String, Vec<&'a Value>> {
    let mut out: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for s in statements {
        for action in s.actions() {
            if action.starts_with(&format!("{service}:")) {
                out.entry(action.to_string())
                    .or_default()
                    .extend(s.resources());
            }
        }
    }
    out
}

#[test]
fn each_function_gets_only_the_table_actions_it_uses() {
    let t = template();
    let table = get_att("StateTable", "Arn");
    for (name, _, _) in FUNCTIONS {
        let dynamo = grants(&role_statements(&t, name), "dynamodb");
        for (action, resources) in &dynamo {
            assert!(
                resources.iter().all(|r| **r == table),
                "{name}: {action} must be limited to the state table, got {resources:?}"
            );
            assert_ne!(
                action, "dynamodb:Scan",
                "{name}: nothing scans the whole table"
            );
            assert!(
                ![
                    "dynamodb:DeleteTable",
                    "dynamodb:UpdateTable",
                    "dynamodb:CreateTable"
                ]
                .contains(&action.as_str()),
                "{name}: {action} is for the stack, not the function"
            );
        }
        let actions: BTreeSet<&str> = dynamo.keys().map(String::as_str).collect();
        // Exactly what each function's store calls need (see the roles' comments); when the
        // store starts using another operation, the role and this list change together.
        let expected: &[&str] = match name {
            "AutomationFunction" => &["dynamodb:PutItem"],
            "MonitorFunction" => &[
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            "MetricsFunction" => &["dynamodb:BatchGetItem", "dynamodb:Query"],
            _ => unreachable!(),
        };
        assert_eq!(actions, expected.iter().copied().collect(), "{name}");
    }
}

#[test]
fn only_the_run_jobs_emit_cloudwatch_metrics() {
    let t = template();
    for (name, _, _) in FUNCTIONS {
        let cloudwatch = grants(&role_statements(&t, name), "cloudwatch");
        if name == "MetricsFunction" {
            assert!(
                cloudwatch.is_empty(),
                "metrics emits no CloudWatch data: {cloudwatch:?}"
            );
        } else {
            assert_eq!(
                cloudwatch.keys().collect::<Vec<_>>(),
                ["cloudwatch:PutMetricData"],
                "{name}"
            );
            let env = &resource(&t, name)["Properties"]["Environment"]["Variables"];
            assert_eq!(
                env["CLOUDWATCH_NAMESPACE"],
                ref_to("CloudWatchNamespace"),
                "{name}"
            );
        }
    }
    assert_eq!(
        t["Parameters"]["CloudWatchNamespace"]["Default"],
        "DevLake/Autopilot"
    );
}

#[test]
fn each_function_reads_only_its_own_secret_and_never_gets_a_plain_one() {
    let t = template();
    let devlake_key = [
        ref_to("DevLakeApiKeySecretArn"),
        ref_to("DevLakeApiKeySecret"),
    ];
    let metrics_token = [
        ref_to("MetricsTokenSecretArn"),
        ref_to("MetricsTokenSecret"),
    ];
    let expected: [(&str, &[Value], &str); 3] = [
        (
            "AutomationFunction",
            &devlake_key,
            "DEVLAKE_API_KEY_SECRET_ARN",
        ),
        (
            "MonitorFunction",
            &devlake_key,
            "DEVLAKE_API_KEY_SECRET_ARN",
        ),
        (
            "MetricsFunction",
            &metrics_token,
            "METRICS_TOKEN_SECRET_ARN",
        ),
    ];
    for (name, own, env_name) in expected {
        let secrets = grants(&role_statements(&t, name), "secretsmanager");
        assert_eq!(
            secrets.keys().collect::<Vec<_>>(),
            ["secretsmanager:GetSecretValue"],
            "{name}: read only"
        );
        let granted = &secrets["secretsmanager:GetSecretValue"];
        let granted: BTreeSet<String> = granted.iter().map(|v| v.to_string()).collect();
        let own_set: BTreeSet<String> = own.iter().map(Value::to_string).collect();
        assert_eq!(
            granted, own_set,
            "{name}: exactly its own secret (existing or created)"
        );

        let env = &resource(&t, name)["Properties"]["Environment"]["Variables"];
        let arn: BTreeSet<String> = alternatives(&env[env_name])
            .into_iter()
            .map(Value::to_string)
            .collect();
        assert_eq!(
            arn, own_set,
            "{name}: {env_name} names the secret it may read"
        );
        for plain in ["DEVLAKE_API_KEY", "METRICS_TOKEN"] {
            assert!(
                env.get(plain).is_none(),
                "{name}: {plain} would put a secret in plain text"
            );
        }
    }

    // The stack creates the secrets when no ARN is given; the token is generated, never typed.
    let token = resource(&t, "MetricsTokenSecret");
    assert_eq!(token["Type"], "AWS::SecretsManager::Secret");
    assert!(token["Properties"]["GenerateSecretString"].is_object());
    assert!(token["Properties"].get("SecretString").is_none());
    let key = resource(&t, "DevLakeApiKeySecret");
    assert_eq!(key["Type"], "AWS::SecretsManager::Secret");
    assert_eq!(t["Parameters"]["DevLakeApiKey"]["NoEcho"], true);
    for param in ["DevLakeApiKeySecretArn", "MetricsTokenSecretArn"] {
        assert_eq!(t["Parameters"][param]["Default"], "", "{param}: optional");
    }
}

#[test]
fn functions_get_their_configuration_and_build_switches_stay_out_of_it() {
    let t = template();
    let required: [(&str, &[&str]); 3] = [
        (
            "AutomationFunction",
            &[
                "DEVLAKE_ENDPOINT",
                "TABLE_NAME",
                "TIMEZONE",
                "PLUGINS",
                "PROJECT_NAME_TEMPLATE",
                "SCOPE_INCLUDE",
                "SCOPE_EXCLUDE",
                "TRIGGER_MODE",
                "TRIGGER_GAP_MS",
                "TRIGGER_MAX_PER_RUN",
            ],
        ),
        (
            "MonitorFunction",
            &[
                "DEVLAKE_ENDPOINT",
                "TABLE_NAME",
                "TIMEZONE",
                "STUCK_AFTER_HOURS",
                "AUTO_RERUN_MAX",
                "FAILURE_RETENTION_DAYS",
                "INITIAL_LOOKBACK_HOURS",
            ],
        ),
        (
            "MetricsFunction",
            &["TABLE_NAME", "TIMEZONE", "FAILURE_WINDOW_DAYS"],
        ),
    ];
    for (name, vars) in required {
        let env = &resource(&t, name)["Properties"]["Environment"]["Variables"];
        for var in vars {
            assert!(env.get(var).is_some(), "{name}: {var} is not set");
        }
        assert_eq!(env["TABLE_NAME"], ref_to("StateTable"), "{name}");
        assert!(
            env.get("AWS_LC_SYS_NO_JITTER_ENTROPY").is_none(),
            "{name}: AWS_LC_SYS_NO_JITTER_ENTROPY is a build-time switch (design.md §8)"
        );
        // Defaults of the parameters behind §3 variables match the documented defaults.
        let defaults = [
            ("TIMEZONE", json!("Asia/Ho_Chi_Minh")),
            ("PROJECT_NAME_TEMPLATE", json!("{plugin}/{fullName}")),
            ("SCOPE_INCLUDE", json!("*")),
            ("SCOPE_EXCLUDE", json!("")),
            ("PLUGINS", json!("")),
            ("TRIGGER_MODE", json!("new-and-failed")),
            ("FAILURE_WINDOW_DAYS", json!(7)),
            ("FAILURE_RETENTION_DAYS", json!(90)),
            ("INITIAL_LOOKBACK_HOURS", json!(24)),
            ("STUCK_AFTER_HOURS", json!(12)),
            ("DRY_RUN", json!("false")),
        ];
        for (var, default) in defaults {
            if let Some(value) = env.get(var) {
                assert_eq!(resolved(&t, value), &default, "{name}: default of {var}");
            }
        }
    }
}

/// Source of each function's own code: its binary and its area of `shared/`. Everything else in
/// `shared/src` is common to all three.
const AREAS: [(&str, &[&str]); 3] = [
    (
        "AutomationFunction",
        &["functions/automation", "shared/src/automation"],
    ),
    (
        "MonitorFunction",
        &["functions/monitor", "shared/src/monitor"],
    ),
    (
        "MetricsFunction",
        &[
            "functions/metrics",
            "shared/src/metrics_http.rs",
            "shared/src/render.rs",
        ],
    ),
];

/// Every variable the template sets on a function is one that function's code reads (a name the
/// template invents, or sets on the wrong function, would be silently ignored).
#[test]
fn every_variable_the_template_sets_is_read_by_that_function() {
    let t = template();
    for (name, _) in AREAS {
        let code = function_code(name, true);
        let env = resource(&t, name)["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap();
        for var in env.keys() {
            assert!(
                code.contains(&format!("\"{var}\"")),
                "{name}: the template sets {var} but that function's code never reads it"
            );
        }
    }
}

/// Appends the non-test part of every `.rs` file under `path` (a file or a directory), skipping
/// `exclude`. Test modules are cut off at `#[cfg(test)]`: a name used only in a test is not read.
fn collect_rust_sources(path: &std::path::Path, exclude: &[PathBuf], out: &mut String) {
    if exclude.iter().any(|e| e == path) {
        return;
    }
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())) {
            collect_rust_sources(&entry.unwrap().path(), exclude, out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        let text = std::fs::read_to_string(path).unwrap();
        out.push_str(text.split("#[cfg(test)]").next().unwrap_or_default());
    }
}

/// Non-test source of one function (its area of `shared/` and its binary) plus, when `common`,
/// the rest of `shared/src`.
fn function_code(function: &str, common: bool) -> String {
    let root = repo_root();
    let all_areas: Vec<PathBuf> = AREAS
        .iter()
        .flat_map(|(_, paths)| paths.iter().map(|p| root.join(p)))
        .collect();
    let own: Vec<PathBuf> = AREAS
        .iter()
        .find(|(name, _)| *name == function)
        .unwrap_or_else(|| panic!("no code area for {function}"))
        .1
        .iter()
        .map(|p| root.join(p))
        .collect();
    let mut code = String::new();
    for path in &own {
        collect_rust_sources(path, &[], &mut code);
    }
    if common {
        // Common code: shared/src without the other functions' areas.
        let others: Vec<PathBuf> = all_areas
            .iter()
            .filter(|p| !own.contains(p))
            .cloned()
            .collect();
        collect_rust_sources(&root.join("shared/src"), &others, &mut code);
    }
    code
}

#[test]
fn alarms_cover_function_errors_monitor_staleness_and_automation_failure() {
    let t = template();
    let alarms: Vec<&Value> = resources(&t)
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|r| &r["Properties"])
        .collect();

    for (name, _, _) in FUNCTIONS {
        assert!(
            alarms.iter().any(|a| a["Namespace"] == "AWS/Lambda"
                && a["MetricName"] == "Errors"
                && a["Dimensions"] == json!([{"Name": "FunctionName", "Value": ref_to(name)}])),
            "{name}: an Errors alarm"
        );
    }

    // Alarms on the jobs' own series must watch a series exactly one job emits: the functions
    // send run-level datums without dimensions, so a name both emit would mix the two jobs.
    let custom: Vec<&Value> = alarms
        .iter()
        .filter(|a| a["Namespace"] == ref_to("CloudWatchNamespace"))
        .copied()
        .collect();
    let monitor_code = function_code("MonitorFunction", false);
    let automation_code = function_code("AutomationFunction", false);
    let emitted_by = |metric: &str| -> Vec<&str> {
        let literal = format!("\"{metric}\"");
        [("monitor", &monitor_code), ("automation", &automation_code)]
            .into_iter()
            .filter(|(_, code)| code.contains(&literal))
            .map(|(job, _)| job)
            .collect()
    };
    let mut watched: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for a in &custom {
        let metric = a["MetricName"].as_str().expect("MetricName");
        assert!(
            a.get("Dimensions").is_none(),
            "{metric}: the run-level series carry no dimensions"
        );
        let jobs = emitted_by(metric);
        assert_eq!(
            jobs.len(),
            1,
            "{metric} must be emitted by exactly one job, found {jobs:?}"
        );
        watched.entry(jobs[0]).or_default().push(a);
    }

    let monitor = watched.get("monitor").cloned().unwrap_or_default();
    assert!(
        monitor.iter().any(|a| a["TreatMissingData"] == "breaching"
            && a["ComparisonOperator"] == "LessThanThreshold"
            && a["Statistic"] == "SampleCount"
            && a["Period"].as_i64().unwrap() * a["EvaluationPeriods"].as_i64().unwrap() <= 900),
        "a monitor staleness alarm: no run reported within 15 minutes"
    );
    let automation = watched.get("automation").cloned().unwrap_or_default();
    assert!(
        automation.iter().any(|a| a["MetricName"] == "Errors"
            && a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            && a["Threshold"] == 1),
        "an automation failure alarm"
    );

    // With a topic, every alarm notifies it; without one, the stack still deploys.
    assert_eq!(t["Parameters"]["AlarmTopicArn"]["Default"], "");
    for a in &alarms {
        let expected =
            json!({"Fn::If": ["HasAlarmTopic", [ref_to("AlarmTopicArn")], ref_to("AWS::NoValue")]});
        assert_eq!(a["AlarmActions"], expected, "{}", a["AlarmDescription"]);
    }
}

/// `[package.metadata.lambda.deploy]` of a function crate, as `key = value` text pairs.
fn cargo_lambda_deploy_metadata(code_uri: &str) -> BTreeMap<String, String> {
    let manifest = std::fs::read_to_string(repo_root().join(code_uri).join("Cargo.toml")).unwrap();
    let mut section = None;
    let mut out = BTreeMap::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = Some(line.to_string());
            assert_ne!(
                line, "[package.metadata.lambda.env]",
                "{code_uri}: Cargo metadata env overrides the env file and the environment (design.md §9)"
            );
            continue;
        }
        if section.as_deref() == Some("[package.metadata.lambda.deploy]") {
            if let Some((key, value)) = line.split_once('=') {
                out.insert(key.trim().to_string(), value.trim().to_string());
            }
        }
    }
    out
}

#[test]
fn cargo_lambda_deploy_metadata_matches_the_template() {
    let t = template();
    for (name, _, code_uri) in FUNCTIONS {
        let meta = cargo_lambda_deploy_metadata(code_uri);
        let p = &resource(&t, name)["Properties"];
        for (key, property) in [("memory", "MemorySize"), ("timeout", "Timeout")] {
            assert_eq!(
                meta.get(key).map(String::as_str),
                Some(p[property].to_string().as_str()),
                "{code_uri}: `cargo lambda deploy` would change {property} of the SAM function"
            );
        }
        for key in ["env", "env_file", "env_var", "env_vars"] {
            assert!(
                !meta.contains_key(key),
                "{code_uri}: configuration belongs in template.yaml, not in Cargo metadata"
            );
        }
        assert_eq!(
            meta.get("merge_env").map(String::as_str),
            Some("true"),
            "{code_uri}"
        );
    }
}
