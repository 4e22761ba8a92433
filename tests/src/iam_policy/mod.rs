//! The execution roles of `template.yaml`, evaluated the way IAM evaluates an identity policy,
//! against the AWS calls the functions made (recorded by `aws_recorder`).
//!
//! What is modelled:
//!
//! - The role of each function (`Role: !GetAtt <Role>.Arn`), its inline `Policies`, and
//!   `AWS::IAM::Policy`/`RolePolicy`/`ManagedPolicy` resources attached to it. Managed policy ARNs
//!   are listed as not evaluated (they grant nothing here).
//! - Intrinsic functions, for one [`Deployment`]: `Ref` (parameters, pseudo parameters,
//!   resources), `GetAtt` (`Arn` of tables, log groups, queues, roles, keys), `Sub`, `Join`,
//!   `Select`, `Split`, `If`, and the condition functions. A parameter the deployment does not set
//!   is unknown: a condition that depends on it may be true or false, so what an `If` on it holds
//!   is taken as possibly granted (both branches), and a value that depends on it matches no
//!   request. Anything else unevaluable is unknown the same way.
//! - What a request needs, as AWS defines it: one action per operation, on the table ARN
//!   (`table/<name>/index/<index>` for an index); `TransactWriteItems`/`TransactGetItems` need the
//!   action of each item (`PutItem`, `UpdateItem`, `DeleteItem`, `ConditionCheckItem`, `GetItem`;
//!   there is no `dynamodb:TransactWriteItems` permission); `BatchGetItem`/`BatchWriteItem` need
//!   their own actions on each table; `cloudwatch:PutMetricData` on `*` with the
//!   `cloudwatch:namespace` condition key; `secretsmanager:GetSecretValue` on the secret, plus
//!   `kms:Decrypt` on its customer-managed key with `kms:ViaService` (Secrets Manager decrypts
//!   with the caller's permissions).
//! - Statements: `Effect`, `Action`/`NotAction`, `Resource`/`NotResource` with `*`/`?`
//!   wildcards, `Condition` with the String/Arn/Bool/Null operators, `ForAllValues:`/`ForAnyValue:`
//!   and `IfExists`. An explicit Deny wins over any Allow.
//!
//! The submodules follow those concepts: `request` (what a call needs), `template` (intrinsic
//! functions), `policy` (statements and the decision) and `condition` (operators and wildcards);
//! this file ties them together into the check of recorded calls against the roles.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_norway::{Mapping, Value};

use crate::aws_recorder::{AwsService, RecordedCall};

mod condition;
mod policy;
mod request;
mod template;

pub use condition::*;
pub use policy::*;
pub use request::*;
use template::*;

/// Actions a role grants for the Lambda platform or another AWS service acting for the function,
/// never called by the functions' code, so no recorded call exercises them.
pub const PLATFORM_ACTIONS: &[(&str, &str)] = &[
    // The Lambda runtime writes the function's logs into its log group.
    ("logs:CreateLogStream", "Lambda writes the function's logs"),
    ("logs:PutLogEvents", "Lambda writes the function's logs"),
    ("logs:CreateLogGroup", "Lambda creates a missing log group"),
    // The asynchronous invocation's on-failure destination / dead-letter queue is written by
    // Lambda with the function's role.
    (
        "sqs:SendMessage",
        "Lambda delivers failed asynchronous invocations to the queue",
    ),
    // A function in a VPC: Lambda manages its network interfaces with the function's role.
    (
        "ec2:CreateNetworkInterface",
        "Lambda attaches the function to the VPC",
    ),
    (
        "ec2:DescribeNetworkInterfaces",
        "Lambda attaches the function to the VPC",
    ),
    (
        "ec2:DescribeSubnets",
        "Lambda attaches the function to the VPC",
    ),
    (
        "ec2:DeleteNetworkInterface",
        "Lambda detaches the function from the VPC",
    ),
    (
        "ec2:AssignPrivateIpAddresses",
        "Lambda attaches the function to the VPC",
    ),
    (
        "ec2:UnassignPrivateIpAddresses",
        "Lambda detaches the function from the VPC",
    ),
    // Lambda decrypts environment variables encrypted with a customer-managed key, and Secrets
    // Manager decrypts secrets with one, both with the function's role. (A test that reads a
    // secret under such a key exercises the second use.)
    (
        "kms:Decrypt",
        "Lambda (environment variables) and Secrets Manager (secrets) decrypt with a customer key",
    ),
    // Lambda writing failed invocations to a queue encrypted with a customer-managed key asks
    // KMS for a data key with the function's role.
    (
        "kms:GenerateDataKey",
        "Lambda sends to a queue encrypted with a customer key",
    ),
    // Active tracing: the Lambda runtime sends the segments.
    ("xray:PutTraceSegments", "Lambda sends X-Ray traces"),
    ("xray:PutTelemetryRecords", "Lambda sends X-Ray traces"),
];

/// The platform reason for `action`, if it is one of [`PLATFORM_ACTIONS`].
pub fn platform_use(action: &str) -> Option<&'static str> {
    PLATFORM_ACTIONS
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(action))
        .map(|(_, why)| *why)
}

/// The result of checking the recorded calls against the roles.
#[derive(Debug, Default)]
pub struct Report {
    pub denied: Vec<String>,
    pub unexercised: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.denied.is_empty() && self.unexercised.is_empty()
    }
}

/// Authorises every call with the role of the function that made it, then lists the Allow
/// actions of each checked role no call needed (except [`PLATFORM_ACTIONS`]).
pub fn check(
    template: &Value,
    deployment: &Deployment,
    functions: &[&str],
    calls: &[RecordedCall],
) -> Result<Report> {
    let mut report = Report::default();
    for function in functions {
        let role = RolePolicy::for_function(template, function, deployment)?;
        // (statement index, action pattern) pairs some call was allowed by.
        let mut used: BTreeSet<(usize, String)> = BTreeSet::new();
        let mut seen_denials = BTreeSet::new();
        for call in calls.iter().filter(|c| c.function == *function) {
            let needed = match accesses(call, deployment) {
                Ok(a) => a,
                Err(problem) => {
                    if seen_denials.insert(problem.clone()) {
                        report.denied.push(problem);
                    }
                    continue;
                }
            };
            for access in needed {
                match role.decide(&access) {
                    Decision::Allowed(statements) => {
                        for i in statements {
                            for pattern in &role.statements[i].actions {
                                if glob(pattern, &access.action, true) {
                                    used.insert((i, pattern.clone()));
                                }
                            }
                        }
                    }
                    denied => {
                        let message = role.explain_denial(&access, &denied);
                        if seen_denials.insert(message.clone()) {
                            report.denied.push(message);
                        }
                    }
                }
            }
        }
        for (i, statement) in role.statements.iter().enumerate() {
            if statement.effect != Effect::Allow {
                continue;
            }
            for action in &statement.actions {
                if used.contains(&(i, action.clone()))
                    || platform_use(action).is_some()
                    || statement.is_used_by_service_on_behalf(action)
                {
                    continue;
                }
                report.unexercised.push(format!(
                    "{function} (role {}) grants {action} in {}{} but no recorded call needed it: \
                     remove it, exercise it in the IAM conformance test, or list it in \
                     iam_policy::PLATFORM_ACTIONS with the reason",
                    role.role,
                    statement.name,
                    if statement.conditional {
                        " (under a condition this deployment leaves open)"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    Ok(report)
}

/// [`check`] on the workspace's `template.yaml`.
pub fn check_template(
    path: &Path,
    deployment: &Deployment,
    functions: &[&str],
    calls: &[RecordedCall],
) -> Result<Report> {
    let template = crate::stack::load_template(path)?;
    check(&template, deployment, functions, calls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws_recorder::TablePart;

    const TEMPLATE: &str = r#"
Parameters:
  Namespace: { Type: String }
  KeyArn: { Type: String, Default: "" }
  SecretArn: { Type: String, Default: "" }
  Subnets: { Type: CommaDelimitedList, Default: "" }
Conditions:
  HasKey: !Not [!Equals [!Ref KeyArn, ""]]
  InVpc: !Not [!Equals [!Join [",", !Ref Subnets], ""]]
Resources:
  Table:
    Type: AWS::DynamoDB::Table
  Role:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Sid: Items
                Effect: Allow
                Action: [dynamodb:PutItem, dynamodb:UpdateItem]
                Resource: !GetAtt Table.Arn
              - Sid: Metrics
                Effect: Allow
                Action: cloudwatch:PutMetricData
                Resource: "*"
                Condition:
                  StringEquals:
                    cloudwatch:namespace: !Ref Namespace
              - !If
                - HasKey
                - Sid: Decrypt
                  Effect: Allow
                  Action: kms:Decrypt
                  Resource: !Ref KeyArn
                  Condition:
                    StringEquals:
                      kms:ViaService: !Sub "secretsmanager.${AWS::Region}.amazonaws.com"
                - !Ref AWS::NoValue
              - !If
                - InVpc
                - Sid: Eni
                  Effect: Allow
                  Action: [ec2:CreateNetworkInterface]
                  Resource: "*"
                - !Ref AWS::NoValue
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Role: !GetAtt Role.Arn
"#;

    fn template() -> Value {
        serde_norway::from_str(TEMPLATE).unwrap()
    }

    fn deployment() -> Deployment {
        Deployment::new("us-east-1", "123456789012", "s")
            .parameter("Namespace", "NS")
            .physical("Table", "t1")
    }

    fn dynamo(op: &str, parts: &[(Option<&str>, &str)]) -> RecordedCall {
        RecordedCall {
            function: "Fn".into(),
            service: AwsService::DynamoDb,
            operation: op.into(),
            tables: parts
                .iter()
                .map(|(element, table)| TablePart {
                    element: element.map(str::to_string),
                    table: table.to_string(),
                    index: None,
                    partition_keys: vec!["PROJECT".into()],
                })
                .collect(),
            namespace: None,
            secret_id: None,
            problem: None,
            status: 200,
        }
    }

    fn metric(namespace: &str) -> RecordedCall {
        RecordedCall {
            function: "Fn".into(),
            service: AwsService::CloudWatch,
            operation: "PutMetricData".into(),
            tables: Vec::new(),
            namespace: Some(namespace.into()),
            secret_id: None,
            problem: None,
            status: 200,
        }
    }

    #[test]
    fn a_transaction_is_authorised_item_by_item() {
        let call = dynamo(
            "TransactWriteItems",
            &[(Some("Put"), "t1"), (Some("Update"), "t1")],
        );
        let report = check(&template(), &deployment(), &["Fn"], &[call, metric("NS")]).unwrap();
        assert!(report.denied.is_empty(), "{:#?}", report.denied);
        // Both item actions were needed; the statements under an undecided If grant only
        // platform actions.
        assert!(report.unexercised.is_empty(), "{:#?}", report.unexercised);

        // Without the transaction, both item actions are surplus grants.
        let report = check(&template(), &deployment(), &["Fn"], &[metric("NS")]).unwrap();
        assert_eq!(report.unexercised.len(), 2, "{:#?}", report.unexercised);
        assert!(
            report.unexercised[0].starts_with("Fn (role Role) grants dynamodb:PutItem in p/Items")
        );

        let call = dynamo("TransactWriteItems", &[(Some("Delete"), "t1")]);
        let report = check(&template(), &deployment(), &["Fn"], &[call]).unwrap();
        assert_eq!(report.denied.len(), 1);
        let text = &report.denied[0];
        assert!(
            text.contains(
                "dynamodb:DeleteItem on arn:aws:dynamodb:us-east-1:123456789012:table/t1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "missing: dynamodb:DeleteItem in a statement on this resource, e.g. p/Items"
            ),
            "{text}"
        );
    }

    #[test]
    fn resources_and_conditions_must_match() {
        let report = check(
            &template(),
            &deployment(),
            &["Fn"],
            &[dynamo("PutItem", &[(None, "other")]), metric("Other/NS")],
        )
        .unwrap();
        assert_eq!(report.denied.len(), 2, "{:#?}", report.denied);
        assert!(
            report.denied[1].contains("cloudwatch:namespace StringEquals [NS]"),
            "{}",
            report.denied[1]
        );
        // A batch needs its own action, not the item actions.
        let report = check(
            &template(),
            &deployment(),
            &["Fn"],
            &[dynamo("BatchWriteItem", &[(None, "t1")])],
        )
        .unwrap();
        assert!(
            report.denied[0].contains("dynamodb:BatchWriteItem"),
            "{:#?}",
            report.denied
        );
    }

    #[test]
    fn statements_under_if_follow_the_deployment() {
        let key = "arn:aws:kms:us-east-1:123456789012:key/k";
        let secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:x";
        let d = deployment()
            .parameter("KeyArn", key)
            .secret_key(secret, key);
        let role = RolePolicy::for_function(&template(), "Fn", &d).unwrap();
        let names: Vec<&str> = role.statements.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["p/Items", "p/Metrics", "p/Decrypt", "p/Eni"]);
        assert!(!role.statements[2].conditional && role.statements[3].conditional);
        let call = RecordedCall {
            function: "Fn".into(),
            service: AwsService::SecretsManager,
            operation: "GetSecretValue".into(),
            tables: Vec::new(),
            namespace: None,
            secret_id: Some(secret.into()),
            problem: None,
            status: 200,
        };
        let needed = accesses(&call, &d).unwrap();
        assert_eq!(needed.len(), 2);
        // The secret itself is not granted by this role; the key is, through Secrets Manager.
        assert_eq!(role.decide(&needed[0]), Decision::ImplicitDeny);
        assert_eq!(role.decide(&needed[1]), Decision::Allowed(vec![2]));
        let mut direct = needed[1].clone();
        direct.context.clear();
        assert_eq!(role.decide(&direct), Decision::ImplicitDeny);
    }

    #[test]
    fn conditions_follow_iam_semantics() {
        let test = |op: &str, values: &[&str], context: Option<Vec<&str>>| {
            let c = ConditionTest {
                operator: op.into(),
                key: "k".into(),
                values: values
                    .iter()
                    .map(|v| Pattern::Text(v.to_string()))
                    .collect(),
            };
            let mut ctx = BTreeMap::new();
            if let Some(v) = context {
                ctx.insert("k".to_string(), v.into_iter().map(str::to_string).collect());
            }
            condition_holds(&c, &ctx)
        };
        assert!(test("StringEquals", &["a"], Some(vec!["a"])));
        assert!(!test("StringEquals", &["a"], None));
        assert!(test("StringEqualsIfExists", &["a"], None));
        assert!(test("StringNotEquals", &["a"], None));
        assert!(!test("StringNotEquals", &["a"], Some(vec!["a"])));
        assert!(test("StringLike", &["PRO*"], Some(vec!["PROJECT"])));
        assert!(test(
            "ForAllValues:StringEquals",
            &["A", "B"],
            Some(vec!["A", "B"])
        ));
        assert!(!test(
            "ForAllValues:StringEquals",
            &["A"],
            Some(vec!["A", "B"])
        ));
        assert!(test("ForAllValues:StringEquals", &["A"], None));
        assert!(!test("ForAnyValue:StringEquals", &["A"], None));
        assert!(test("Null", &["true"], None));
        assert!(glob("dynamodb:*Item", "dynamodb:PutItem", true));
        assert!(glob(
            "arn:aws:dynamodb:*:*:table/t1/index/*",
            "arn:aws:dynamodb:r:a:table/t1/index/i",
            false
        ));
        assert!(!glob(
            "arn:aws:dynamodb:*:*:table/t1",
            "arn:aws:dynamodb:r:a:table/t1/index/i",
            false
        ));
    }
}
