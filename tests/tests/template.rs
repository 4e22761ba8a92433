//! The deployment contract of `template.yaml` (docs/deploying.md, docs/iam.md): the three Rust
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

/// (logical id, binary name, CodeUri) of the four functions.
const FUNCTIONS: [(&str, &str, &str); 4] = [
    (
        "AutomationFunction",
        "devlake-automation",
        "functions/automation",
    ),
    ("MonitorFunction", "devlake-monitor", "functions/monitor"),
    ("MetricsFunction", "devlake-metrics", "functions/metrics"),
    ("EventsFunction", "devlake-events", "functions/events"),
];

/// The functions behind a public function URL (`AuthType: NONE`), each authenticating every
/// request itself.
const URL_FUNCTIONS: [&str; 2] = ["MetricsFunction", "EventsFunction"];

#[test]
fn the_four_functions_are_rust_binaries_built_by_cargo_lambda_for_al2023() {
    let t = template();
    let serverless: BTreeSet<&str> = resources(&t)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(
        serverless,
        FUNCTIONS.iter().map(|f| f.0).collect::<BTreeSet<_>>(),
        "exactly the four functions"
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
    assert!(
        (10..=30).contains(&timeout("EventsFunction")),
        "a notification is a few DynamoDB requests of at most 5 s each, answered while DevLake waits"
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
    for name in URL_FUNCTIONS {
        assert!(
            resource(&t, name)["Properties"].get("Events").is_none(),
            "{name} is only reached through its URL"
        );
    }
}

#[test]
fn metrics_and_events_function_urls_have_no_iam_auth_and_are_stack_outputs() {
    let t = template();
    for (name, _, _) in FUNCTIONS {
        let url = &resource(&t, name)["Properties"]["FunctionUrlConfig"];
        if URL_FUNCTIONS.contains(&name) {
            // The metrics handler checks the bearer token, the events handler DevLake's
            // signature, before anything else.
            assert_eq!(url["AuthType"], "NONE", "{name}");
        } else {
            assert!(url.is_null(), "{name} must not have a function URL");
        }
    }
    let outputs = t["Outputs"].as_object().expect("Outputs");
    for name in URL_FUNCTIONS {
        // SAM names the generated AWS::Lambda::Url `<function>Url`.
        let url = get_att(&format!("{name}Url"), "FunctionUrl");
        assert!(
            outputs.values().any(|o| o["Value"] == url),
            "an Output's Value is the {name} URL"
        );
    }
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
                // The VPC variant's Describe calls have no resource-level permissions at all.
                if actions == ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"] {
                    continue;
                }
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
        // store starts using another operation, the role and this list change together. The
        // IAM conformance test (tests/tests/iam.rs) checks these against the calls the functions
        // actually make; this list keeps a change to them visible in review.
        let expected: &[&str] = match name {
            "AutomationFunction" => &["dynamodb:PutItem"],
            "MonitorFunction" => &[
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            "MetricsFunction" => &["dynamodb:BatchGetItem", "dynamodb:Query"],
            // Its commit, then the metrics snapshot it publishes (`snapshot::publish_after_commit`).
            "EventsFunction" => &[
                "dynamodb:BatchGetItem",
                "dynamodb:BatchWriteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            _ => unreachable!(),
        };
        assert_eq!(actions, expected.iter().copied().collect(), "{name}");
    }

    // The events function's URL is public: each of its table grants is limited to the
    // partitions it writes, so a forged request could at most do what a notification does.
    let leading = |s: &Statement<'_>| {
        let c = &s.body["Condition"];
        let (op, keys) = c
            .as_object()
            .and_then(|m| m.iter().next())
            .unwrap_or_else(|| panic!("events: {:?} without a condition", s.actions()));
        (op.clone(), strings(&keys["dynamodb:LeadingKeys"]).join(","))
    };
    let mut by_partition: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
    for s in role_statements(&t, "EventsFunction") {
        let dynamo: Vec<&str> = s
            .actions()
            .into_iter()
            .filter(|a| a.starts_with("dynamodb:"))
            .collect();
        if !dynamo.is_empty() {
            by_partition.entry(leading(&s)).or_default().extend(dynamo);
        }
    }
    let expected: BTreeMap<(String, String), BTreeSet<&str>> = [
        (
            ("ForAllValues:StringEquals", "PROJECT"),
            &[
                "dynamodb:BatchGetItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ][..],
        ),
        (
            ("ForAllValues:StringEquals", "SNAPSHOT"),
            &[
                "dynamodb:BatchWriteItem",
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
            ],
        ),
        (
            ("ForAllValues:StringLike", "FAILURE#*"),
            &["dynamodb:PutItem"],
        ),
        (
            ("ForAllValues:StringEquals", "EVENTS"),
            &["dynamodb:UpdateItem"],
        ),
    ]
    .into_iter()
    .map(|((op, keys), actions)| {
        (
            (op.to_string(), keys.to_string()),
            actions.iter().copied().collect(),
        )
    })
    .collect();
    assert_eq!(
        by_partition, expected,
        "EventsFunction: table grants by partition"
    );
}

#[test]
fn only_the_run_jobs_emit_cloudwatch_metrics() {
    let t = template();
    for (name, _, _) in FUNCTIONS {
        let cloudwatch = grants(&role_statements(&t, name), "cloudwatch");
        if URL_FUNCTIONS.contains(&name) {
            assert!(
                cloudwatch.is_empty(),
                "{name} emits no CloudWatch data: {cloudwatch:?}"
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
    let notification_secret = [
        ref_to("NotificationSecretArn"),
        ref_to("NotificationSecret"),
    ];
    let expected: [(&str, &[Value], &str); 4] = [
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
        (
            "EventsFunction",
            &notification_secret,
            "NOTIFICATION_SECRET_ARN",
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
        for plain in ["DEVLAKE_API_KEY", "METRICS_TOKEN", "NOTIFICATION_SECRET"] {
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
    let notification = resource(&t, "NotificationSecret");
    assert_eq!(notification["Type"], "AWS::SecretsManager::Secret");
    assert!(notification["Properties"]["GenerateSecretString"].is_object());
    assert!(notification["Properties"].get("SecretString").is_none());
    let key = resource(&t, "DevLakeApiKeySecret");
    assert_eq!(key["Type"], "AWS::SecretsManager::Secret");
    assert_eq!(t["Parameters"]["DevLakeApiKey"]["NoEcho"], true);
    for param in [
        "DevLakeApiKeySecretArn",
        "MetricsTokenSecretArn",
        "NotificationSecretArn",
    ] {
        assert_eq!(t["Parameters"][param]["Default"], "", "{param}: optional");
    }
}

#[test]
fn functions_get_their_configuration_and_build_switches_stay_out_of_it() {
    let t = template();
    let required: [(&str, &[&str]); 4] = [
        (
            "AutomationFunction",
            &[
                "DEVLAKE_ENDPOINT",
                "ALLOW_INSECURE_HTTP",
                "DEVLAKE_CA_BUNDLE",
                "TABLE_NAME",
                "TIMEZONE",
                "PLUGINS",
                "PROJECT_NAME_TEMPLATE",
                "SCOPE_INCLUDE",
                "SCOPE_EXCLUDE",
                "TRIGGER_MODE",
                "TRIGGER_GAP_MS",
                "TRIGGER_MAX_PER_RUN",
                "TIME_AFTER_POLICY",
                "INITIAL_BACKFILL_DAYS",
                "ORPHAN_POLICY",
            ],
        ),
        (
            "MonitorFunction",
            &[
                "DEVLAKE_ENDPOINT",
                "ALLOW_INSECURE_HTTP",
                "DEVLAKE_CA_BUNDLE",
                "TABLE_NAME",
                "TIMEZONE",
                "STUCK_AFTER_HOURS",
                "STUCK_ACTION",
                "AUTO_RERUN_MAX",
                "FAILURE_RETENTION_DAYS",
                "FAILURE_WINDOW_DAYS",
                "INITIAL_LOOKBACK_HOURS",
            ],
        ),
        (
            "MetricsFunction",
            &["TABLE_NAME", "TIMEZONE", "FAILURE_WINDOW_DAYS"],
        ),
        (
            "EventsFunction",
            &[
                "TABLE_NAME",
                "NOTIFICATION_SECRET_ARN",
                "FAILURE_STATUSES",
                "FAILURE_RETENTION_DAYS",
                "FAILURE_WINDOW_DAYS",
            ],
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
            "{name}: AWS_LC_SYS_NO_JITTER_ENTROPY is a build-time switch (docs/deploying.md)"
        );
        // Defaults of the parameters behind the documented variables match the documented defaults.
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
            ("STUCK_ACTION", json!("none")),
            ("DRY_RUN", json!("false")),
            ("ALLOW_INSECURE_HTTP", json!("false")),
            ("DEVLAKE_CA_BUNDLE", json!("")),
            ("TIME_AFTER_POLICY", json!("previous-saturday")),
            ("INITIAL_BACKFILL_DAYS", json!(0)),
            ("ORPHAN_POLICY", json!("report")),
        ];
        for (var, default) in defaults {
            if let Some(value) = env.get(var) {
                assert_eq!(resolved(&t, value), &default, "{name}: default of {var}");
            }
        }
    }
    // The monitor keeps the recent-failures lists exactly as long as the page's window: one
    // parameter feeds both, so they cannot drift apart.
    let window = |name: &str| {
        resource(&t, name)["Properties"]["Environment"]["Variables"]["FAILURE_WINDOW_DAYS"].clone()
    };
    assert_eq!(window("MonitorFunction"), ref_to("FailureWindowDays"));
    assert_eq!(window("MetricsFunction"), ref_to("FailureWindowDays"));
    // A failure the events function records must be the monitor's record: the same statuses,
    // retention and window, from the same parameters.
    for var in [
        "FAILURE_STATUSES",
        "FAILURE_RETENTION_DAYS",
        "FAILURE_WINDOW_DAYS",
    ] {
        let of =
            |name: &str| resource(&t, name)["Properties"]["Environment"]["Variables"][var].clone();
        assert_eq!(of("EventsFunction"), of("MonitorFunction"), "{var}");
    }
}

/// Source of each function's own code: its binary and its area of `shared/`. Everything else in
/// `shared/src` is common to all four.
const AREAS: [(&str, &[&str]); 4] = [
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
            "shared/src/render",
        ],
    ),
    ("EventsFunction", &["functions/events", "shared/src/events"]),
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
    } else if path.extension().is_some_and(|e| e == "rs")
        // A module's unit tests in their own file (`#[cfg(test)] mod tests;`).
        && path.file_name().is_none_or(|n| n != "tests.rs")
    {
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

/// One CloudWatch series: metric name and dimensions (name, value) in the order sent.
type Series = (String, Vec<(String, String)>);

/// Every series the code sends, with its unit, captured by the CloudWatch double from the sinks
/// the functions build at start-up (`runtime::metrics_sink`): one automation run, one monitor
/// run that records a failure, and one monitor run that cannot reach DevLake.
struct Emitted {
    automation: BTreeMap<Series, String>,
    monitor: BTreeMap<Series, String>,
    monitor_failed: BTreeMap<Series, String>,
}

async fn emitted_series() -> Emitted {
    use chrono::Utc;
    use devlake_autopilot::automation::{self, AutomationConfig, Ports};
    use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
    use devlake_autopilot::monitor::{self, Deadline, Monitor, MonitorSettings};
    use devlake_autopilot::store::DynamoStore;
    use devlake_testkit::cloudwatch_double::CloudWatchDouble;
    use devlake_testkit::sim::{Fixture, PipelineSeed, Simulator};
    use devlake_testkit::stack::{dynamodb_local, free_port, local_sdk_config};

    const NAMESPACE: &str = "Test/TemplateAlarms";
    let sim = Simulator::start(Fixture::empty()).await;
    let client = |endpoint: String| {
        DevLakeClient::new(ClientConfig {
            endpoint,
            max_retries: 0,
            ..ClientConfig::default()
        })
        .unwrap()
    };
    let devlake = client(sim.url().to_string());
    let cw_client =
        |cw: &CloudWatchDouble| aws_sdk_cloudwatch::Client::new(&local_sdk_config(cw.url()));
    let series = |cw: &CloudWatchDouble| -> BTreeMap<Series, String> {
        cw.datums()
            .into_iter()
            .map(|d| {
                assert_eq!(d.namespace, NAMESPACE);
                ((d.metric_name, d.dimensions), d.unit.unwrap_or_default())
            })
            .collect()
    };

    let cw = CloudWatchDouble::start().await;
    let sink = automation::runtime::metrics_sink(cw_client(&cw), NAMESPACE);
    let ports = Ports {
        devlake: &devlake,
        run_log: None,
        metrics: Some(&sink),
    };
    let now = Utc::now();
    automation::handle(
        &AutomationConfig::default(),
        ports,
        &json!({"scheduledTime": now.to_rfc3339()}),
        now,
        Deadline::none(),
    )
    .await
    .expect("automation run");
    let automation = series(&cw);

    // A failure to record, so the monitor sends every series of a completed run.
    let handle = sim.handle();
    let blueprint = handle.create_project("github/acme/api").unwrap();
    handle
        .insert_pipelines([PipelineSeed {
            blueprint_id: blueprint,
            status: "TASK_FAILED".into(),
            created_at: Some(now - chrono::Duration::minutes(30)),
            began_at: Some(now - chrono::Duration::minutes(29)),
            finished_at: Some(now - chrono::Duration::minutes(20)),
            ..PipelineSeed::default()
        }])
        .unwrap();
    let ddb = dynamodb_local().await;
    let store = DynamoStore::new(ddb.client(), ddb.create_table("template-alarms").await);
    let settings = MonitorSettings {
        project_dimension: true,
        ..MonitorSettings::default()
    };
    let cw = CloudWatchDouble::start().await;
    let sink = monitor::runtime::metrics_sink(cw_client(&cw), NAMESPACE);
    let summary = Monitor {
        settings: &settings,
        devlake: &devlake,
        store: &store,
        sink: &sink,
    }
    .handle(&json!({}), Utc::now(), Deadline::none())
    .await
    .expect("monitor run");
    assert_eq!(summary.new_failures, 1);
    let monitor = series(&cw);

    let nowhere = client(format!("http://127.0.0.1:{}", free_port().unwrap()));
    let cw = CloudWatchDouble::start().await;
    let sink = monitor::runtime::metrics_sink(cw_client(&cw), NAMESPACE);
    Monitor {
        settings: &settings,
        devlake: &nowhere,
        store: &store,
        sink: &sink,
    }
    .handle(&json!({}), Utc::now(), Deadline::none())
    .await
    .expect_err("DevLake is not there");
    let monitor_failed = series(&cw);

    Emitted {
        automation,
        monitor,
        monitor_failed,
    }
}

fn function_dimension(job: &str) -> (String, String) {
    ("Function".to_string(), job.to_string())
}

#[tokio::test]
async fn alarms_watch_series_the_jobs_send_under_their_function_dimension() {
    let t = template();
    let alarms: Vec<&Value> = resources(&t)
        .values()
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|r| &r["Properties"])
        .collect();

    let lambda_alarm = |name: &str, metric: &str| {
        alarms.iter().any(|a| {
            a["Namespace"] == "AWS/Lambda"
                && a["MetricName"] == metric
                && a["Dimensions"] == json!([{"Name": "FunctionName", "Value": ref_to(name)}])
        })
    };
    for (name, _, _) in FUNCTIONS {
        assert!(lambda_alarm(name, "Errors"), "{name}: an Errors alarm");
    }
    // DevLake never sends a notification twice: a throttled one, or one answered 5xx, is lost
    // (the monitor catches up), and the function's own 503 is no Lambda error.
    assert!(lambda_alarm("EventsFunction", "Throttles"));
    assert!(lambda_alarm("EventsFunction", "Url5xxCount"));

    let emitted = emitted_series().await;
    // Every datum names its job, first; the monitor's per-project series adds ProjectName.
    for (job, series) in [
        ("automation", &emitted.automation),
        ("monitor", &emitted.monitor),
        ("monitor", &emitted.monitor_failed),
    ] {
        assert!(!series.is_empty(), "{job} sent nothing");
        for (name, dims) in series.keys() {
            assert_eq!(
                dims.first(),
                Some(&function_dimension(job)),
                "{job}: {name}"
            );
            assert!(
                dims.len() == 1 || (name == "NewFailures" && dims[1].0 == "ProjectName"),
                "{job}: {name} {dims:?}"
            );
        }
    }
    assert!(emitted
        .monitor
        .keys()
        .any(|(name, dims)| name == "NewFailures" && dims.len() == 2));
    // The series both jobs send have one name and one unit.
    let unit = |series: &BTreeMap<Series, String>, job: &str, name: &str| {
        series
            .get(&(name.to_string(), vec![function_dimension(job)]))
            .unwrap_or_else(|| panic!("{job} does not send {name}: {series:?}"))
            .clone()
    };
    for (name, expected) in [
        ("RunSuccess", "None"),
        ("RunDurationMs", "Milliseconds"),
        ("Errors", "Count"),
    ] {
        assert_eq!(unit(&emitted.automation, "automation", name), expected);
        assert_eq!(unit(&emitted.monitor, "monitor", name), expected);
        assert_eq!(unit(&emitted.monitor_failed, "monitor", name), expected);
    }

    // Each alarm on the jobs' own series names a series, with its Function dimension, that the
    // code sends (a name or dimension the code does not send leaves the alarm without data).
    let custom: Vec<&Value> = alarms
        .iter()
        .filter(|a| a["Namespace"] == ref_to("CloudWatchNamespace"))
        .copied()
        .collect();
    let mut watched: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for a in &custom {
        let metric = a["MetricName"].as_str().expect("MetricName");
        let dims: Vec<(String, String)> = a["Dimensions"]
            .as_array()
            .unwrap_or_else(|| panic!("{metric}: an alarm on a job's series names its Function"))
            .iter()
            .map(|d| {
                let value = d["Value"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{metric}: literal dimension value, got {d}"));
                (d["Name"].as_str().unwrap().to_string(), value.to_string())
            })
            .collect();
        let job: &str = match dims.as_slice() {
            [(name, job)] if name == "Function" && job == "automation" => "automation",
            [(name, job)] if name == "Function" && job == "monitor" => "monitor",
            other => panic!("{metric}: dimensions must be exactly Function, got {other:?}"),
        };
        let sent = if job == "automation" {
            &emitted.automation
        } else {
            &emitted.monitor
        };
        let unit = sent
            .get(&(metric.to_string(), dims.clone()))
            .unwrap_or_else(|| panic!("{metric} {dims:?} is not sent by the {job}: {sent:?}"));
        if let Some(u) = a.get("Unit") {
            assert_eq!(
                u,
                unit.as_str(),
                "{metric}: the alarm's Unit must be the one sent"
            );
        }
        watched.entry(job).or_default().push(a);
    }

    let monitor = watched.get("monitor").cloned().unwrap_or_default();
    let stale: Vec<&&Value> = monitor
        .iter()
        .filter(|a| {
            a["TreatMissingData"] == "breaching"
                && a["ComparisonOperator"] == "LessThanThreshold"
                && a["Statistic"] == "SampleCount"
                && a["Period"].as_i64().unwrap() * a["EvaluationPeriods"].as_i64().unwrap() <= 900
        })
        .collect();
    assert_eq!(
        stale.len(),
        1,
        "a monitor staleness alarm: no run reported within 15 minutes"
    );
    // A run that fails still reports itself, so a failing monitor is not taken for a stale one.
    let stale_series = (
        stale[0]["MetricName"].as_str().unwrap().to_string(),
        vec![function_dimension("monitor")],
    );
    assert!(
        emitted.monitor_failed.contains_key(&stale_series),
        "{stale_series:?} is sent by failed monitor runs too"
    );
    assert!(
        monitor.iter().any(|a| a["MetricName"] == "DevLakeUp"
            && a["Statistic"] == "Maximum"
            && a["ComparisonOperator"] == "LessThanThreshold"
            && a["Threshold"] == 1),
        "a DevLake-down alarm"
    );
    let automation = watched.get("automation").cloned().unwrap_or_default();
    assert!(
        automation.iter().any(|a| a["MetricName"] == "Errors"
            && a["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
            && a["Threshold"] == 1
            && a["TreatMissingData"] == "notBreaching"),
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

// ---- What a deployment with given parameter values gives each function ----

/// The parameter values of one deployment: every Default, `DevLakeEndpoint` (the only parameter
/// without one) and the overrides; with the template's conditions evaluated under them.
struct Deployment<'a> {
    t: &'a Value,
    params: BTreeMap<String, String>,
}

/// A CloudFormation parameter value as the function sees it (numbers arrive as text).
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl<'a> Deployment<'a> {
    fn new(t: &'a Value, overrides: &[(&str, &str)]) -> Self {
        let mut params: BTreeMap<String, String> = t["Parameters"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, p)| !p["Default"].is_null())
            .map(|(name, p)| (name.clone(), text(&p["Default"])))
            .collect();
        params.insert(
            "DevLakeEndpoint".into(),
            "https://devlake.example.com/api/rest".into(),
        );
        for (name, value) in overrides {
            assert!(t["Parameters"].get(*name).is_some(), "no parameter {name}");
            params.insert(name.to_string(), value.to_string());
        }
        Deployment { t, params }
    }

    fn condition(&self, name: &str) -> bool {
        let c = self.t["Conditions"]
            .get(name)
            .unwrap_or_else(|| panic!("no condition {name}"));
        self.holds(c)
    }

    fn holds(&self, c: &Value) -> bool {
        let args = |f: &str| {
            c[f].as_array()
                .unwrap_or_else(|| panic!("{f} takes a list"))
        };
        if let Some(name) = c.get("Condition").and_then(Value::as_str) {
            self.condition(name)
        } else if c.get("Fn::Equals").is_some() {
            let a = args("Fn::Equals");
            self.value(&a[0]) == self.value(&a[1])
        } else if c.get("Fn::Not").is_some() {
            !self.holds(&args("Fn::Not")[0])
        } else if c.get("Fn::And").is_some() {
            args("Fn::And").iter().all(|c| self.holds(c))
        } else if c.get("Fn::Or").is_some() {
            args("Fn::Or").iter().any(|c| self.holds(c))
        } else {
            panic!("unsupported condition {c}")
        }
    }

    /// Whether the resource (or output) is created in this deployment.
    fn created(&self, entity: &Value) -> bool {
        entity["Condition"]
            .as_str()
            .is_none_or(|name| self.condition(name))
    }

    /// The value of an expression; `None` for `AWS::NoValue`. A resource stands for a
    /// placeholder of its kind (a secret for an ARN), and must be created.
    fn value(&self, v: &Value) -> Option<String> {
        if let Some(branches) = v.get("Fn::If").and_then(Value::as_array) {
            let chosen = if self.condition(branches[0].as_str().unwrap()) {
                &branches[1]
            } else {
                &branches[2]
            };
            return self.value(chosen);
        }
        if let Some(name) = v.get("Ref").and_then(Value::as_str) {
            if name == "AWS::NoValue" {
                return None;
            }
            if let Some(p) = self.params.get(name) {
                return Some(p.clone());
            }
            let r = resource(self.t, name);
            assert!(
                self.created(r),
                "{name} is referred to in a deployment that does not create it"
            );
            return Some(match r["Type"].as_str().unwrap() {
                "AWS::SecretsManager::Secret" => {
                    format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}")
                }
                _ => format!("stack-{name}"),
            });
        }
        match v {
            Value::Object(_) | Value::Array(_) => panic!("unsupported expression {v}"),
            other => Some(text(other)),
        }
    }

    /// The environment the function gets.
    fn env(&self, function: &str) -> devlake_autopilot::config::Env {
        resource(self.t, function)["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(k, v)| self.value(v).map(|v| (k.clone(), v)))
            .collect()
    }

    fn env_var(&self, function: &str, var: &str) -> Option<String> {
        let v = &resource(self.t, function)["Properties"]["Environment"]["Variables"][var];
        if v.is_null() {
            None
        } else {
            self.value(v)
        }
    }
}

/// What the function checks at start-up before any network call; `Err` is the one line it
/// would stop with.
fn start_up(function: &str, env: &devlake_autopilot::config::Env) -> Result<(), String> {
    use devlake_autopilot::automation::runtime::Automation;
    use devlake_autopilot::events::EventsSettings;
    use devlake_autopilot::metrics_http::MetricsSettings;
    use devlake_autopilot::monitor::runtime::MonitorFunction;
    match function {
        "AutomationFunction" => Automation::check_env(env).map_err(|e| e.to_string()),
        "MonitorFunction" => MonitorFunction::check_env(env)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "MetricsFunction" => MetricsSettings::from_env(env)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        "EventsFunction" => EventsSettings::from_env(env)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        other => panic!("no function {other}"),
    }
}

/// Parameters whose value reaches the function's environment (directly or through `Fn::If`).
fn parameters_of(t: &Value, function: &str) -> BTreeSet<String> {
    fn walk(v: &Value, t: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                if let Some(name) = map.get("Ref").and_then(Value::as_str) {
                    if t["Parameters"].get(name).is_some() {
                        out.insert(name.to_string());
                    }
                }
                if let Some(Value::Array(branches)) = map.get("Fn::If") {
                    for b in &branches[1..] {
                        walk(b, t, out);
                    }
                    return;
                }
                map.values().for_each(|v| walk(v, t, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, t, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(
        &resource(t, function)["Properties"]["Environment"]["Variables"],
        t,
        &mut out,
    );
    out
}

#[test]
fn a_deployment_with_the_defaults_passes_every_functions_start_up_checks() {
    let t = template();
    for overrides in [
        vec![],
        vec![("DevLakeApiKey", "dlk-0123456789")],
        vec![(
            "DevLakeApiKeySecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake-key",
        )],
        vec![(
            "MetricsTokenSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:metrics-token",
        )],
        vec![(
            "NotificationSecretArn",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:notification-secret",
        )],
    ] {
        let d = Deployment::new(&t, &overrides);
        for (name, _, _) in FUNCTIONS {
            if let Err(e) = start_up(name, &d.env(name)) {
                panic!("{name} with {overrides:?} would not start: {e}");
            }
        }
    }
}

/// An http:// endpoint deploys (the template cannot tie a pattern to another parameter) but
/// neither job starts with it unless AllowInsecureHttp is true; https:// starts either way.
#[test]
fn an_http_endpoint_starts_the_jobs_only_with_allow_insecure_http() {
    let t = template();
    let flag = &t["Parameters"]["AllowInsecureHttp"];
    assert_eq!(flag["Default"], "false");
    let order: Vec<&str> = t["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"][0]
        ["Parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        order[..3],
        ["DevLakeEndpoint", "AllowInsecureHttp", "DevLakeCaBundle"]
    );
    let http = "http://devlake.internal:8080";
    for function in ["AutomationFunction", "MonitorFunction"] {
        assert_eq!(
            resource(&t, function)["Properties"]["Environment"]["Variables"]["ALLOW_INSECURE_HTTP"],
            ref_to("AllowInsecureHttp"),
            "{function}"
        );
        let refused = Deployment::new(&t, &[("DevLakeEndpoint", http)]);
        let err = start_up(function, &refused.env(function)).expect_err(function);
        assert!(err.contains("DEVLAKE_ENDPOINT"), "{err}");
        assert!(err.contains("ALLOW_INSECURE_HTTP"), "{err}");
        let allowed = Deployment::new(
            &t,
            &[("DevLakeEndpoint", http), ("AllowInsecureHttp", "true")],
        );
        assert_eq!(start_up(function, &allowed.env(function)), Ok(()));
        let https = Deployment::new(&t, &[("AllowInsecureHttp", "true")]);
        assert_eq!(start_up(function, &https.env(function)), Ok(()));
    }
}

/// A DevLake without an API key: no secret, no key variable, no permission to read one, for both
/// an empty answer (`sam deploy`, the console) and "none" (`sam deploy --guided` re-asks on an
/// empty answer for a NoEcho parameter).
#[test]
fn a_devlake_without_an_api_key_deploys_without_a_secret() {
    let t = template();
    let key_param = &t["Parameters"]["DevLakeApiKey"];
    assert_eq!(key_param["NoEcho"], true);
    assert_eq!(key_param["Default"], "");
    let secret = resource(&t, "DevLakeApiKeySecret");
    let output = &t["Outputs"]["DevLakeApiKeySecretArn"];
    for no_key in ["", "none"] {
        let d = Deployment::new(&t, &[("DevLakeApiKey", no_key)]);
        assert!(!d.created(secret), "{no_key:?}: a secret was created");
        assert!(!d.created(output), "{no_key:?}: the output names no secret");
        for function in ["AutomationFunction", "MonitorFunction"] {
            for var in ["DEVLAKE_API_KEY", "DEVLAKE_API_KEY_SECRET_ARN"] {
                assert_eq!(
                    d.env_var(function, var),
                    None,
                    "{no_key:?}: {function} {var}"
                );
            }
            // The role's conditional statements, as deployed.
            let role = resource(&t, function)["Properties"]["Role"]["Fn::GetAtt"][0]
                .as_str()
                .unwrap();
            for policy in resource(&t, role)["Properties"]["Policies"]
                .as_array()
                .unwrap()
            {
                for statement in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                    let deployed = match statement.get("Fn::If").and_then(Value::as_array) {
                        Some(b) if d.condition(b[0].as_str().unwrap()) => &b[1],
                        Some(b) => &b[2],
                        None => statement,
                    };
                    assert!(
                        !deployed
                            .to_string()
                            .contains("secretsmanager:GetSecretValue"),
                        "{no_key:?}: {function} may read a secret: {deployed}"
                    );
                }
            }
            assert_eq!(start_up(function, &d.env(function)), Ok(()), "{no_key:?}");
        }
    }

    // With a key the stack keeps it in a secret the two jobs read; an existing secret wins.
    let d = Deployment::new(&t, &[("DevLakeApiKey", "dlk-0123456789")]);
    assert!(d.created(secret));
    let created = d.env_var("MonitorFunction", "DEVLAKE_API_KEY_SECRET_ARN");
    assert!(created.is_some_and(|arn| arn.ends_with(":DevLakeApiKeySecret")));
    let existing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake-key";
    let d = Deployment::new(
        &t,
        &[
            ("DevLakeApiKey", "dlk-0123456789"),
            ("DevLakeApiKeySecretArn", existing),
        ],
    );
    assert!(!d.created(secret));
    assert_eq!(
        d.env_var("AutomationFunction", "DEVLAKE_API_KEY_SECRET_ARN")
            .as_deref(),
        Some(existing)
    );
}

/// Every value the template lets through for a number or a choice reaches a function that
/// starts with it (a value the template allows must never stop a function at start-up).
#[test]
fn numeric_and_choice_parameters_allow_only_what_the_functions_accept() {
    let t = template();
    let mut checked = BTreeSet::new();
    for (function, _, _) in FUNCTIONS {
        for name in parameters_of(&t, function) {
            let p = &t["Parameters"][&name];
            let mut values: Vec<String> = Vec::new();
            if p["Type"] == "Number" {
                let (min, max) = (&p["MinValue"], &p["MaxValue"]);
                assert!(
                    min.is_i64() && max.is_i64(),
                    "{name}: a number reaching {function} needs MinValue and MaxValue"
                );
                values.extend([text(min), text(max), text(&p["Default"])]);
            }
            if let Some(allowed) = p["AllowedValues"].as_array() {
                values.extend(allowed.iter().map(text));
            }
            for value in values {
                let d = Deployment::new(&t, &[(name.as_str(), value.as_str())]);
                if let Err(e) = start_up(function, &d.env(function)) {
                    panic!(
                        "{name}={value} is allowed by the template but {function} refuses it: {e}"
                    );
                }
                checked.insert(name.clone());
            }
        }
    }
    for name in [
        "TriggerGapMs",
        "TriggerMaxPerRun",
        "TriggerMode",
        "DryRun",
        "StuckAfterHours",
        "StuckAction",
        "AutoRerunMax",
        "InitialLookbackHours",
        "FailureRetentionDays",
        "CloudWatchProjectDimension",
        "FailureWindowDays",
        "InitialBackfillDays",
        "OrphanPolicy",
    ] {
        assert!(checked.contains(name), "{name} was not checked");
    }

    // Where the code has a range, the template offers exactly that range.
    let pinned = [
        ("InitialLookbackHours", "MonitorFunction", 1, 8784),
        ("StuckAfterHours", "MonitorFunction", 1, 8784),
        ("FailureRetentionDays", "MonitorFunction", 1, 3650),
        ("FailureWindowDays", "MetricsFunction", 1, 90),
        ("FailureWindowDays", "EventsFunction", 1, 90),
        ("FailureRetentionDays", "EventsFunction", 1, 3650),
        ("InitialBackfillDays", "AutomationFunction", 0, 3650),
    ];
    for (name, function, min, max) in pinned {
        let p = &t["Parameters"][name];
        assert_eq!(
            (p["MinValue"].as_i64(), p["MaxValue"].as_i64()),
            (Some(min), Some(max)),
            "{name}"
        );
        for outside in [min - 1, max + 1] {
            let d = Deployment::new(&t, &[(name, &outside.to_string())]);
            let err = start_up(function, &d.env(function)).expect_err(&format!(
                "{name}={outside} is outside what {function} accepts"
            ));
            assert!(err.starts_with("invalid configuration: "), "{err}");
        }
    }
}

/// Text parameters with an `AllowedPattern`: every sample the pattern lets through starts the
/// functions that read it. (`DevLakeEndpoint` is left to the client, which parses the URL.)
#[test]
fn patterns_let_through_only_values_the_functions_accept() {
    let t = template();
    let samples: BTreeMap<&str, Vec<String>> = BTreeMap::from([
        (
            "CloudWatchNamespace",
            [
                "DevLake/Autopilot",
                "AWS/Lambda",
                "AWS/",
                "AWS",
                "AWS:x",
                "AWSome/DevLake",
                "AW",
                "A",
                "aws/lowercase",
                "/leading/slash",
                ":colon",
                " leading-space",
                "trailing-space ",
                "Team Dev#1:a.b-c_d",
                "Ä",
                "a\tb",
                "a$b",
                "",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain(["n".repeat(255), "n".repeat(256)])
            .collect(),
        ),
        (
            "Plugins",
            [
                "",
                "github",
                "github,jira",
                " gitlab , bamboo ",
                "azuredevops_go,circleci,jenkins,bitbucket",
                "bitbucket_server",
                "github, bitbucket_server",
                "bitbucket-server",
                "github,",
                ",github",
                "github,,jira",
                "GitHub",
                "svn",
                "github;jira",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        (
            "TimeAfterPolicy",
            [
                "previous-saturday",
                "rolling:0d",
                "rolling:7d",
                "rolling:3650d",
                "rolling:3651d",
                "rolling:9999d",
                "rolling:7",
                "fixed:2026-01-31",
                "fixed:2026-13-01",
                "fixed:2026-1-1",
                "weekly",
                "",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
        (
            "FailureStatuses",
            [
                "TASK_FAILED,TASK_PARTIAL",
                "TASK_CANCELLED",
                "TASK_FAILED , TASK_CANCELLED",
                "task_failed",
                "TASK_COMPLETED",
                "TASK_FAILED,",
                "",
                " , ",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ),
    ]);
    for (function, _, _) in FUNCTIONS {
        for name in parameters_of(&t, function) {
            let p = &t["Parameters"][&name];
            let Some(pattern) = p["AllowedPattern"].as_str() else {
                continue;
            };
            let re = regex_lite::Regex::new(pattern)
                .unwrap_or_else(|e| panic!("{name}: AllowedPattern {pattern:?}: {e}"));
            // CloudFormation checks the pattern against the whole value.
            let allowed = |v: &str| {
                re.find(v)
                    .is_some_and(|m| m.start() == 0 && m.end() == v.len())
                    && p["MaxLength"]
                        .as_u64()
                        .is_none_or(|max| v.len() as u64 <= max)
            };
            if !p["Default"].is_null() {
                assert!(
                    allowed(&text(&p["Default"])),
                    "{name}: the default fails its pattern"
                );
            }
            if name == "DevLakeEndpoint" {
                continue;
            }
            let Some(values) = samples.get(name.as_str()) else {
                // Secret ARNs: the functions take any non-empty text.
                assert!(
                    name.ends_with("SecretArn"),
                    "{name}: add samples for its pattern"
                );
                continue;
            };
            for value in values.iter().filter(|v| allowed(v)) {
                let d = Deployment::new(&t, &[(name.as_str(), value.as_str())]);
                if let Err(e) = start_up(function, &d.env(function)) {
                    panic!("{name}={value:?} is allowed by the template but {function} refuses it: {e}");
                }
            }
        }
    }

    // What the pattern must keep out, and what it must let in.
    let ns = &t["Parameters"]["CloudWatchNamespace"];
    let re = regex_lite::Regex::new(ns["AllowedPattern"].as_str().expect("a pattern")).unwrap();
    for refused in ["AWS/Lambda", "AWS/", ":x", " x", "Ä", ""] {
        assert!(
            !re.is_match(refused),
            "{refused:?} passes the namespace pattern"
        );
    }
    for accepted in [
        "DevLake/Autopilot",
        "AWSome/DevLake",
        "AWS",
        "A",
        "Team Dev#1:a.b-c_d",
    ] {
        assert!(
            re.is_match(accepted),
            "{accepted:?} fails the namespace pattern"
        );
    }
    assert_eq!(ns["MaxLength"], 255);
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
                "{code_uri}: Cargo metadata env overrides the env file and the environment"
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

/// What each function binary links, as `sam build` resolves it (the function's own package, so
/// its own features): one HTTP/TLS stack, reqwest over rustls with ring. The AWS SDK's own HTTPS
/// client would add a second hyper/rustls stack with aws-lc (about 2 MB, and a jitter-entropy
/// seeding on the first handshake unless switched off at build time), HTTP/2 another 0.5 MB
/// (docs/benchmarks.md, binary size).
#[test]
fn function_binaries_link_one_tls_stack_without_aws_lc() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (_, binary, code_uri) in FUNCTIONS {
        let out = std::process::Command::new(&cargo)
            .args([
                "tree",
                "--locked",
                "--offline",
                "-e",
                "normal",
                "--prefix",
                "none",
            ])
            .arg("--manifest-path")
            .arg(repo_root().join(code_uri).join("Cargo.toml"))
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree for {binary}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tree = String::from_utf8_lossy(&out.stdout);
        let crates: BTreeSet<&str> = tree
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        for present in ["reqwest", "rustls", "ring"] {
            assert!(crates.contains(present), "{binary} has no {present}");
        }
        for absent in ["aws-lc-rs", "aws-lc-sys", "aws-smithy-http-client", "h2"] {
            assert!(
                !crates.contains(absent),
                "{binary} depends on {absent} (through: cargo tree -i {absent} --manifest-path {code_uri}/Cargo.toml)"
            );
        }
    }
}

// ---- Private network: the VPC variant and the default one ----

/// The value an expression takes in this deployment when it is a whole property (object, list or
/// scalar) chosen by `Fn::If`; `None` for `AWS::NoValue`.
fn chosen<'a>(d: &Deployment<'a>, v: &'a Value) -> Option<&'a Value> {
    if let Some(branches) = v.get("Fn::If").and_then(Value::as_array) {
        let branch = if d.condition(branches[0].as_str().unwrap()) {
            &branches[1]
        } else {
            &branches[2]
        };
        return chosen(d, branch);
    }
    if v.is_null() || v == &ref_to("AWS::NoValue") {
        return None;
    }
    Some(v)
}

/// The statements of a function's role as deployed (conditional statements resolved).
fn deployed_statements<'a>(d: &Deployment<'a>, function: &str) -> Vec<&'a Value> {
    let role = resource(d.t, function)["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .unwrap();
    deployed_role_statements(d, role)
}

/// The statements of a role as deployed.
fn deployed_role_statements<'a>(d: &Deployment<'a>, role: &str) -> Vec<&'a Value> {
    resource(d.t, role)["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["PolicyDocument"]["Statement"].as_array().unwrap())
        .filter_map(|s| chosen(d, s))
        .collect()
}

/// Actions of `service` in a function's deployed role.
fn deployed_actions(d: &Deployment<'_>, function: &str, service: &str) -> BTreeSet<String> {
    deployed_statements(d, function)
        .into_iter()
        .flat_map(|s| strings(&s["Action"]))
        .filter(|a| a.starts_with(&format!("{service}:")))
        .map(str::to_string)
        .collect()
}

const SUBNETS: &str = "subnet-0123456789abcdef0,subnet-0fedcba9876543210";
const SECURITY_GROUPS: &str = "sg-0123456789abcdef0";

fn vpc_overrides() -> [(&'static str, &'static str); 2] {
    [
        ("VpcSubnetIds", SUBNETS),
        ("VpcSecurityGroupIds", SECURITY_GROUPS),
    ]
}

#[test]
fn only_the_jobs_that_call_devlake_join_a_vpc_and_only_when_one_is_given() {
    let t = template();
    for name in ["VpcSubnetIds", "VpcSecurityGroupIds"] {
        assert_eq!(t["Parameters"][name]["Default"], "", "{name}: optional");
    }

    // Default: no function is in a VPC.
    let d = Deployment::new(&t, &[]);
    assert!(!d.condition("UseVpc"));
    for (name, _, _) in FUNCTIONS {
        let vpc = &resource(&t, name)["Properties"]["VpcConfig"];
        assert_eq!(chosen(&d, vpc), None, "{name} is in a VPC by default");
    }

    // Both lists given: the automation and the monitor use them; metrics only reads DynamoDB and
    // has no VpcConfig in any variant.
    let d = Deployment::new(&t, &vpc_overrides());
    assert!(d.condition("UseVpc"));
    for name in ["AutomationFunction", "MonitorFunction"] {
        let vpc = chosen(&d, &resource(&t, name)["Properties"]["VpcConfig"])
            .unwrap_or_else(|| panic!("{name} has no VpcConfig with subnets given"));
        assert_eq!(
            vpc["SubnetIds"],
            json!({"Fn::Split": [",", ref_to("VpcSubnetIds")]}),
            "{name}"
        );
        assert_eq!(
            vpc["SecurityGroupIds"],
            json!({"Fn::Split": [",", ref_to("VpcSecurityGroupIds")]}),
            "{name}"
        );
    }
    for name in URL_FUNCTIONS {
        assert!(
            resource(&t, name)["Properties"].get("VpcConfig").is_none(),
            "{name} stays outside the VPC"
        );
    }

    // One list without the other is refused by the template's rule, before anything is created.
    let rule = &t["Rules"]["VpcSubnetsAndSecurityGroupsTogether"]["Assertions"][0]["Assert"];
    for (subnets, groups, accepted) in [
        ("", "", true),
        (SUBNETS, SECURITY_GROUPS, true),
        (SUBNETS, "", false),
        ("", SECURITY_GROUPS, false),
    ] {
        let d = Deployment::new(
            &t,
            &[("VpcSubnetIds", subnets), ("VpcSecurityGroupIds", groups)],
        );
        assert_eq!(d.holds(rule), accepted, "{subnets:?} / {groups:?}");
    }

    // The patterns take comma lists of IDs, nothing with spaces or other kinds of ID.
    for (name, good, bad) in [
        (
            "VpcSubnetIds",
            ["", "subnet-0123abcd", SUBNETS],
            ["subnet-0123abcd, subnet-4567ef01", "sg-0123abcd", "subnet-"],
        ),
        (
            "VpcSecurityGroupIds",
            ["", "sg-0123abcd", "sg-0123abcd,sg-4567ef01"],
            ["sg-0123abcd,", "subnet-0123abcd", " sg-0123abcd"],
        ),
    ] {
        let re = regex_lite::Regex::new(t["Parameters"][name]["AllowedPattern"].as_str().unwrap())
            .unwrap();
        let whole = |v: &str| {
            re.find(v)
                .is_some_and(|m| m.start() == 0 && m.end() == v.len())
        };
        for v in good {
            assert!(whole(v), "{name}: {v:?} is refused");
        }
        for v in bad {
            assert!(!whole(v), "{name}: {v:?} is accepted");
        }
    }
}

#[test]
fn network_interface_permissions_exist_only_in_the_vpc_variant_and_are_scoped() {
    let t = template();
    let default = Deployment::new(&t, &[]);
    let vpc = Deployment::new(&t, &vpc_overrides());
    for (name, _, _) in FUNCTIONS {
        assert_eq!(
            deployed_actions(&default, name, "ec2"),
            BTreeSet::new(),
            "{name}: EC2 permissions without a VPC"
        );
    }
    for name in URL_FUNCTIONS {
        assert_eq!(
            deployed_actions(&vpc, name, "ec2"),
            BTreeSet::new(),
            "{name} is never in the VPC"
        );
    }
    let needed: BTreeSet<String> = [
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
    ]
    .into_iter()
    .map(String::from)
    .collect();

    for name in ["AutomationFunction", "MonitorFunction"] {
        assert_eq!(deployed_actions(&vpc, name, "ec2"), needed, "{name}");
        let ec2: Vec<&Value> = deployed_statements(&vpc, name)
            .into_iter()
            .filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("ec2:")))
            .collect();
        // Creating an interface is authorised on the interface, the subnet and the security
        // groups: each is limited to this account and region, and the subnets and groups to the
        // ones given.
        let account_scoped = |s: &Value, kind: &str| {
            let arn = s["Resource"]["Fn::Sub"].as_str().unwrap_or_default();
            arn == format!(
                "arn:${{AWS::Partition}}:ec2:${{AWS::Region}}:${{AWS::AccountId}}:{kind}/*"
            )
        };
        let create: Vec<&&Value> = ec2
            .iter()
            .filter(|s| strings(&s["Action"]).contains(&"ec2:CreateNetworkInterface"))
            .collect();
        for (kind, key, param) in [
            ("subnet", "ec2:SubnetID", "VpcSubnetIds"),
            (
                "security-group",
                "ec2:SecurityGroupID",
                "VpcSecurityGroupIds",
            ),
        ] {
            let s = create
                .iter()
                .find(|s| account_scoped(s, kind))
                .unwrap_or_else(|| {
                    panic!("{name}: no ec2:CreateNetworkInterface on this account's {kind}s")
                });
            assert_eq!(
                s["Condition"]["StringEquals"][key],
                json!({"Fn::Split": [",", ref_to(param)]}),
                "{name}: {kind} limited to {param}"
            );
        }
        for s in &ec2 {
            let actions = strings(&s["Action"]);
            if s["Resource"] == "*" {
                assert!(
                    actions.iter().all(|a| a.starts_with("ec2:Describe")),
                    "{name}: only Describe calls on every resource: {actions:?}"
                );
            } else {
                assert!(
                    ["network-interface", "subnet", "security-group"]
                        .iter()
                        .any(|kind| account_scoped(s, kind)),
                    "{name}: {actions:?} on {}",
                    s["Resource"]
                );
            }
        }
    }

    // Every EC2 statement of the template sits behind the VPC condition.
    for (name, r) in resources(&t) {
        if r["Type"] != "AWS::IAM::Role" {
            continue;
        }
        for policy in r["Properties"]["Policies"].as_array().unwrap() {
            for s in policy["PolicyDocument"]["Statement"].as_array().unwrap() {
                if s.to_string().contains("\"ec2:") {
                    assert_eq!(s["Fn::If"][0], "UseVpc", "{name}: {s}");
                    assert_eq!(s["Fn::If"][2], ref_to("AWS::NoValue"), "{name}");
                }
            }
        }
    }
}

// ---- Concurrency ----

#[test]
fn the_public_urls_have_a_concurrency_ceiling_and_the_jobs_never_overlap() {
    let t = template();
    let reserved = |name: &str| &resource(&t, name)["Properties"]["ReservedConcurrentExecutions"];
    // One run of each job at a time: a second invoke is throttled, not run alongside.
    assert_eq!(reserved("AutomationFunction"), &json!(1));
    assert_eq!(reserved("MonitorFunction"), &json!(1));

    // The public URL is capped by a small reservation by default, so a flood cannot take the
    // account's concurrency from other functions; 0 means no reservation at all (Lambda's own 0
    // would stop the function).
    for (function, param) in [
        ("MetricsFunction", "MetricsReservedConcurrency"),
        ("EventsFunction", "EventsReservedConcurrency"),
    ] {
        let p = &t["Parameters"][param];
        let default = p["Default"].as_i64().expect("a numeric default");
        assert!(
            (1..=10).contains(&default),
            "{param}: default reservation {default}: enough for its callers, small for any account"
        );
        assert_eq!(p["MinValue"], 0);
        for (value, expected) in [
            ("0", None),
            ("1", Some(ref_to(param))),
            (&default.to_string(), Some(ref_to(param))),
        ] {
            let d = Deployment::new(&t, &[(param, value)]);
            assert_eq!(
                chosen(&d, reserved(function)).cloned(),
                expected,
                "{param}={value}"
            );
        }
    }
}

// ---- Customer-managed encryption key ----

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// Every place the stack stores data, with the property naming its key.
fn encrypted_properties(t: &Value) -> Vec<(String, &Value)> {
    let mut out = vec![(
        "StateTable.SSESpecification".to_string(),
        &resource(t, "StateTable")["Properties"]["SSESpecification"],
    )];
    for (name, r) in resources(t) {
        let key = match r["Type"].as_str().unwrap() {
            "AWS::Logs::LogGroup" | "AWS::SecretsManager::Secret" => "KmsKeyId",
            "AWS::SQS::Queue" => "KmsMasterKeyId",
            "AWS::Serverless::Function" => "KmsKeyArn",
            _ => continue,
        };
        out.push((format!("{name}.{key}"), &r["Properties"][key]));
    }
    out
}

#[test]
fn a_customer_managed_key_encrypts_what_the_stack_stores_only_when_one_is_given() {
    let t = template();
    let p = &t["Parameters"]["KmsKeyArn"];
    assert_eq!(p["Default"], "");
    let re = regex_lite::Regex::new(p["AllowedPattern"].as_str().unwrap()).unwrap();
    let whole = |v: &str| {
        re.find(v)
            .is_some_and(|m| m.start() == 0 && m.end() == v.len())
    };
    for ok in [
        "",
        KEY,
        "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    ] {
        assert!(whole(ok), "{ok:?} is refused");
    }
    // Logs and Lambda take only key ARNs, and IAM names the key by its ARN.
    for refused in [
        "alias/devlake",
        "arn:aws:kms:us-east-1:123456789012:alias/devlake",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
    ] {
        assert!(!whole(refused), "{refused:?} is accepted");
    }

    let places = encrypted_properties(&t);
    assert_eq!(
        places.len(),
        1 + 4 + 3 + 1 + 4,
        "table, log groups, secrets, queue, functions: {:?}",
        places.iter().map(|p| &p.0).collect::<Vec<_>>()
    );

    // Without a key: AWS owned or managed keys everywhere, no KMS permission for the stack's key.
    let d = Deployment::new(&t, &[("DevLakeApiKey", "dlk-0123456789")]);
    for (place, v) in &places {
        assert_eq!(chosen(&d, v), None, "{place} names a key by default");
    }
    let queue = &resource(&t, "FailedInvocationsQueue")["Properties"];
    assert_eq!(
        chosen(&d, &queue["SqsManagedSseEnabled"]),
        Some(&json!(true)),
        "the queue keeps SQS-managed encryption without a key"
    );
    for role in [
        "AutomationRole",
        "MonitorRole",
        "MetricsRole",
        "EventsRole",
        "SchedulesRole",
    ] {
        let kms: Vec<&Value> = deployed_role_statements(&d, role)
            .into_iter()
            .filter(|s| s.to_string().contains("\"kms:"))
            .collect();
        assert!(
            kms.is_empty(),
            "{role}: KMS permissions without a key: {kms:?}"
        );
    }

    // With a key: every place names it, and the queue drops SQS-managed encryption (the two
    // cannot be combined).
    let d = Deployment::new(
        &t,
        &[("KmsKeyArn", KEY), ("DevLakeApiKey", "dlk-0123456789")],
    );
    for (place, v) in &places {
        let v = chosen(&d, v).unwrap_or_else(|| panic!("{place}: no key with KmsKeyArn given"));
        let key = if place.starts_with("StateTable") {
            assert_eq!(v["SSEEnabled"], true);
            assert_eq!(v["SSEType"], "KMS");
            &v["KMSMasterKeyId"]
        } else {
            v
        };
        assert_eq!(key, &ref_to("KmsKeyArn"), "{place}");
    }
    assert_eq!(chosen(&d, &queue["SqsManagedSseEnabled"]), None);
}

/// What each role may do with the stack's key: only through the service holding the data, or
/// for its own function's environment, and only when a key is given.
#[test]
fn roles_get_the_key_permissions_their_data_needs() {
    let t = template();
    let d = Deployment::new(
        &t,
        &[("KmsKeyArn", KEY), ("DevLakeApiKey", "dlk-0123456789")],
    );
    let via = |s: &Value| {
        s["Condition"]["StringEquals"]["kms:ViaService"]["Fn::Sub"]
            .as_str()
            .map(|v| v.split('.').next().unwrap().to_string())
    };
    // (role, function name suffix, table actions, sends to the queue, its secret is created)
    let read = ["kms:Decrypt", "kms:DescribeKey"];
    let write = [
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
    ];
    for (function, suffix, table, sends) in [
        ("AutomationFunction", "automation", &write[..], true),
        ("MonitorFunction", "monitor", &write[..], true),
        ("MetricsFunction", "metrics", &read[..], false),
        ("EventsFunction", "events", &write[..], false),
    ] {
        let kms: Vec<&Value> = deployed_statements(&d, function)
            .into_iter()
            .filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("kms:")))
            .collect();
        let by = |service: &str| -> BTreeSet<&str> {
            kms.iter()
                .filter(|s| via(s).as_deref() == Some(service))
                .flat_map(|s| strings(&s["Action"]))
                .collect()
        };
        assert_eq!(
            by("dynamodb"),
            table.iter().copied().collect(),
            "{function}"
        );
        assert_eq!(
            by("secretsmanager"),
            BTreeSet::from(["kms:Decrypt"]),
            "{function}"
        );
        let queue = if sends {
            BTreeSet::from(["kms:Decrypt", "kms:GenerateDataKey"])
        } else {
            BTreeSet::new()
        };
        assert_eq!(
            by("sqs"),
            queue,
            "{function}: failed runs go to the encrypted queue"
        );

        // Environment variables: Decrypt only in the context of this function.
        let env: Vec<&&Value> = kms.iter().filter(|s| via(s).is_none()).collect();
        assert_eq!(env.len(), 1, "{function}: {env:?}");
        assert_eq!(strings(&env[0]["Action"]), ["kms:Decrypt"]);
        let context = env[0]["Condition"]["StringEquals"]
            ["kms:EncryptionContext:aws:lambda:FunctionArn"]["Fn::Sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{function}: environment key use is not tied to it"));
        assert!(
            context.ends_with(&format!(":function:${{FunctionNamePrefix}}-{suffix}")),
            "{function}: {context}"
        );
        for s in &kms {
            assert_eq!(s["Resource"], ref_to("KmsKeyArn"), "{function}: {s}");
        }
    }

    // The schedules send undeliverable events to the same queue.
    let schedules: BTreeSet<&str> = deployed_role_statements(&d, "SchedulesRole")
        .into_iter()
        .filter(|s| via(s).as_deref() == Some("sqs"))
        .flat_map(|s| strings(&s["Action"]))
        .collect();
    assert_eq!(
        schedules,
        BTreeSet::from(["kms:Decrypt", "kms:GenerateDataKey"])
    );

    // An existing secret keeps its own key (SecretsKmsKeyArn): the stack's key is not granted
    // for Secrets Manager then.
    let d = Deployment::new(
        &t,
        &[
            ("KmsKeyArn", KEY),
            (
                "DevLakeApiKeySecretArn",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:devlake-key",
            ),
            (
                "MetricsTokenSecretArn",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:metrics-token",
            ),
            (
                "NotificationSecretArn",
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:notification-secret",
            ),
        ],
    );
    for (function, _, _) in FUNCTIONS {
        for s in deployed_statements(&d, function) {
            if s["Resource"] == ref_to("KmsKeyArn") {
                assert_ne!(via(s).as_deref(), Some("secretsmanager"), "{function}: {s}");
            }
        }
    }
}

#[test]
fn both_schedules_use_the_stacks_own_role_which_can_only_invoke_the_two_jobs() {
    let t = template();
    for (function, event) in [
        ("AutomationFunction", "Daily"),
        ("MonitorFunction", "Every5Minutes"),
    ] {
        let props = &resource(&t, function)["Properties"]["Events"][event]["Properties"];
        assert_eq!(
            props["RoleArn"],
            get_att("SchedulesRole", "Arn"),
            "{function}"
        );
    }
    let role = resource(&t, "SchedulesRole");
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Principal"]["Service"], "scheduler.amazonaws.com");
    assert_eq!(
        trust["Condition"]["StringEquals"]["aws:SourceAccount"],
        ref_to("AWS::AccountId"),
        "only schedules of this account"
    );
    let d = Deployment::new(&t, &[]);
    let mut granted: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for s in deployed_role_statements(&d, "SchedulesRole") {
        for action in strings(&s["Action"]) {
            granted
                .entry(action.to_string())
                .or_default()
                .extend(alternatives(&s["Resource"]).into_iter().cloned());
        }
    }
    assert_eq!(
        granted,
        BTreeMap::from([
            (
                "lambda:InvokeFunction".to_string(),
                vec![
                    get_att("AutomationFunction", "Arn"),
                    get_att("MonitorFunction", "Arn")
                ]
            ),
            (
                "sqs:SendMessage".to_string(),
                vec![get_att("FailedInvocationsQueue", "Arn")]
            ),
        ])
    );
}

// ---- Static checks ----

/// checkov findings the template does not fix are skipped in the resource's own Metadata (CI
/// fails on any other): each skip names a check and gives a one-line reason, and only these
/// resources and checks are skipped, so a new skip is a reviewed change of this list.
#[test]
fn checkov_skips_are_few_and_each_has_a_reason() {
    let t = template();
    let mut skipped = BTreeSet::new();
    for (name, r) in resources(&t) {
        let Some(skips) = r["Metadata"]["checkov"]["skip"].as_array() else {
            assert!(
                r["Metadata"].get("checkov").is_none(),
                "{name}: checkov metadata without a skip list"
            );
            continue;
        };
        for skip in skips {
            let id = skip["id"].as_str().unwrap_or_default();
            assert!(
                id.starts_with("CKV_AWS_"),
                "{name}: skip without a check id: {skip}"
            );
            let comment = skip["comment"].as_str().unwrap_or_default();
            assert!(
                comment.len() >= 30 && !comment.contains('\n'),
                "{name} {id}: the reason must be one real line: {comment:?}"
            );
            skipped.insert(format!("{name} {id}"));
        }
    }
    let expected: BTreeSet<String> = [
        "StateTable CKV_AWS_119",
        "AutomationFunction CKV_AWS_116",
        "MonitorFunction CKV_AWS_116",
        "MetricsFunction CKV_AWS_116",
        "MetricsFunction CKV_AWS_117",
        "EventsFunction CKV_AWS_116",
        "EventsFunction CKV_AWS_117",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(skipped, expected);

    // The skipped DLQ check is covered otherwise: both jobs send failed asynchronous runs to
    // the failed-invocations queue.
    for name in ["AutomationFunction", "MonitorFunction"] {
        let on_failure = &resource(&t, name)["Properties"]["EventInvokeConfig"]
            ["DestinationConfig"]["OnFailure"];
        assert_eq!(on_failure["Type"], "SQS", "{name}");
        assert_eq!(
            on_failure["Destination"],
            get_att("FailedInvocationsQueue", "Arn"),
            "{name}"
        );
    }
}
