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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_norway::{Mapping, Value};

use crate::aws_recorder::{AwsService, RecordedCall};

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

/// One deployment of the template: what its parameters and resources are.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub region: String,
    pub account: String,
    pub stack_name: String,
    /// Parameter values; a parameter not listed is unknown (any value).
    pub parameters: BTreeMap<String, String>,
    /// Physical names of resources by logical id (a table's name, a secret's ARN); others get
    /// `<stack>-<logical id>` or their name property.
    pub physical_names: BTreeMap<String, String>,
    /// Secrets (by ARN) encrypted with a customer-managed KMS key, and that key's ARN.
    pub secret_keys: BTreeMap<String, String>,
}

impl Deployment {
    pub fn new(region: &str, account: &str, stack_name: &str) -> Deployment {
        Deployment {
            region: region.into(),
            account: account.into(),
            stack_name: stack_name.into(),
            parameters: BTreeMap::new(),
            physical_names: BTreeMap::new(),
            secret_keys: BTreeMap::new(),
        }
    }

    pub fn parameter(mut self, name: &str, value: &str) -> Deployment {
        self.parameters.insert(name.into(), value.into());
        self
    }

    pub fn physical(mut self, logical_id: &str, name: &str) -> Deployment {
        self.physical_names.insert(logical_id.into(), name.into());
        self
    }

    pub fn secret_key(mut self, secret_arn: &str, kms_key_arn: &str) -> Deployment {
        self.secret_keys
            .insert(secret_arn.into(), kms_key_arn.into());
        self
    }

    /// The ARN of DynamoDB table `name` (and `index`) in this account and region.
    pub fn table_arn(&self, name: &str, index: Option<&str>) -> String {
        let table = format!(
            "arn:aws:dynamodb:{}:{}:table/{name}",
            self.region, self.account
        );
        match index {
            Some(i) => format!("{table}/index/{i}"),
            None => table,
        }
    }
}

/// One authorisation IAM makes for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub function: String,
    pub action: String,
    pub resource: String,
    /// Condition keys of the request (`cloudwatch:namespace`, `dynamodb:LeadingKeys`).
    pub context: BTreeMap<String, Vec<String>>,
    /// The request it comes from, for messages.
    pub request: String,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)?;
        for (key, values) in &self.context {
            write!(f, " [{key}={}]", values.join(","))?;
        }
        write!(f, " (request {})", self.request)
    }
}

/// The authorisations a recorded request needs (several for a transaction or a batch over
/// several tables); an error for a request that cannot be placed.
pub fn accesses(call: &RecordedCall, deployment: &Deployment) -> Result<Vec<Access>, String> {
    if let Some(problem) = &call.problem {
        return Err(format!(
            "{} sent a request the recorder could not decode ({}): {problem}",
            call.function, call.operation
        ));
    }
    let request = format!("{}:{}", call.service.iam_prefix(), call.operation);
    let access =
        |action: String, resource: String, context: BTreeMap<String, Vec<String>>| Access {
            function: call.function.clone(),
            action,
            resource,
            context,
            request: request.clone(),
        };
    match call.service {
        AwsService::Unknown => Err(format!(
            "{} sent a request to an unknown service: {}",
            call.function, call.operation
        )),
        AwsService::DynamoDb => {
            if call.tables.is_empty() {
                return Ok(vec![access(
                    format!("dynamodb:{}", call.operation),
                    "*".into(),
                    BTreeMap::new(),
                )]);
            }
            call.tables
                .iter()
                .map(|part| {
                    let operation = match part.element.as_deref() {
                        None => call.operation.clone(),
                        Some("Put") => "PutItem".into(),
                        Some("Update") => "UpdateItem".into(),
                        Some("Delete") => "DeleteItem".into(),
                        Some("ConditionCheck") => "ConditionCheckItem".into(),
                        Some("Get") => "GetItem".into(),
                        Some(other) => {
                            return Err(format!(
                                "{}: unknown transaction element {other}",
                                call.operation
                            ))
                        }
                    };
                    let mut context = BTreeMap::new();
                    if !part.partition_keys.is_empty() {
                        context.insert(
                            "dynamodb:LeadingKeys".to_string(),
                            part.partition_keys.clone(),
                        );
                    }
                    Ok(access(
                        format!("dynamodb:{operation}"),
                        deployment.table_arn(&part.table, part.index.as_deref()),
                        context,
                    ))
                })
                .collect()
        }
        AwsService::CloudWatch => {
            let mut context = BTreeMap::new();
            if let Some(ns) = &call.namespace {
                context.insert("cloudwatch:namespace".to_string(), vec![ns.clone()]);
            }
            Ok(vec![access(
                format!("cloudwatch:{}", call.operation),
                "*".into(),
                context,
            )])
        }
        AwsService::SecretsManager => {
            let Some(id) = &call.secret_id else {
                return Err(format!(
                    "{}: secretsmanager:{} without a SecretId",
                    call.function, call.operation
                ));
            };
            let arn = if id.starts_with("arn:") {
                id.clone()
            } else {
                format!(
                    "arn:aws:secretsmanager:{}:{}:secret:{id}",
                    deployment.region, deployment.account
                )
            };
            let mut out = vec![access(
                format!("secretsmanager:{}", call.operation),
                arn.clone(),
                BTreeMap::new(),
            )];
            if call.operation == "GetSecretValue" {
                if let Some(key) = deployment.secret_keys.get(&arn) {
                    out.push(access(
                        "kms:Decrypt".into(),
                        key.clone(),
                        BTreeMap::from([
                            (
                                "kms:ViaService".to_string(),
                                vec![format!(
                                    "secretsmanager.{}.amazonaws.com",
                                    deployment.region
                                )],
                            ),
                            (
                                "kms:EncryptionContext:SecretARN".to_string(),
                                vec![arn.clone()],
                            ),
                        ]),
                    ));
                }
            }
            Ok(out)
        }
    }
}

/// A value after evaluation for one deployment.
#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Str(String),
    Bool(bool),
    List(Vec<Resolved>),
    Map(BTreeMap<String, Resolved>),
    /// `AWS::NoValue`: the property or list item is left out.
    NoValue,
    /// Depends on something this deployment does not fix.
    Unknown(String),
    /// An `If` on an unknown condition: any of these.
    Either(Vec<Resolved>),
    Null,
}

impl Resolved {
    fn get(&self, key: &str) -> Option<&Resolved> {
        match self {
            Resolved::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// A string-or-list property as the strings it may hold; unknown parts become
    /// [`Pattern::Unknown`].
    fn patterns(&self) -> Vec<Pattern> {
        match self {
            Resolved::Str(s) => vec![Pattern::Text(s.clone())],
            Resolved::Bool(b) => vec![Pattern::Text(b.to_string())],
            Resolved::List(items) | Resolved::Either(items) => {
                items.iter().flat_map(Resolved::patterns).collect()
            }
            Resolved::NoValue | Resolved::Null => Vec::new(),
            Resolved::Unknown(why) => vec![Pattern::Unknown(why.clone())],
            Resolved::Map(_) => vec![Pattern::Unknown("a map where a string was expected".into())],
        }
    }
}

/// A string from the policy: known, or unknown for this deployment (matches nothing).
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    Text(String),
    Unknown(String),
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Text(t) => f.write_str(t),
            Pattern::Unknown(why) => write!(f, "<unknown: {why}>"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One condition test: `operator` on `key` against `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionTest {
    pub operator: String,
    pub key: String,
    pub values: Vec<Pattern>,
}

/// A policy statement of a role, evaluated for a deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `<policy name>/<Sid or #index>`.
    pub name: String,
    pub effect: Effect,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub resources: Vec<Pattern>,
    pub not_resources: Vec<Pattern>,
    pub conditions: Vec<ConditionTest>,
    /// Inside an `If` whose condition this deployment does not decide.
    pub conditional: bool,
}

impl Statement {
    /// A KMS grant limited by `kms:ViaService` is exercised by that service (DynamoDB for an
    /// encrypted table, SQS for an encrypted queue) with the function's credentials whenever the
    /// function calls the service; no call of the function's own names the KMS action.
    pub fn is_used_by_service_on_behalf(&self, action: &str) -> bool {
        action.to_ascii_lowercase().starts_with("kms:")
            && self
                .conditions
                .iter()
                .any(|c| c.key.eq_ignore_ascii_case("kms:ViaService"))
    }

    fn matches(&self, access: &Access) -> bool {
        let action_ok = if self.not_actions.is_empty() {
            self.actions.iter().any(|a| glob(a, &access.action, true))
        } else {
            !self
                .not_actions
                .iter()
                .any(|a| glob(a, &access.action, true))
        };
        let resource_ok = if self.not_resources.is_empty() {
            self.resources
                .iter()
                .any(|r| pattern_matches(r, &access.resource))
        } else {
            // An unknown NotResource might exclude this resource: does not match.
            !self
                .not_resources
                .iter()
                .any(|r| !matches!(r, Pattern::Text(_)) || pattern_matches(r, &access.resource))
        };
        action_ok
            && resource_ok
            && self
                .conditions
                .iter()
                .all(|c| condition_holds(c, &access.context))
    }

    fn describe(&self) -> String {
        let resources: Vec<String> = self.resources.iter().map(|r| r.to_string()).collect();
        let mut text = format!(
            "{} [{}] on [{}]",
            self.name,
            self.actions.join(", "),
            resources.join(", ")
        );
        for c in &self.conditions {
            let values: Vec<String> = c.values.iter().map(|v| v.to_string()).collect();
            text.push_str(&format!(
                " if {} {} [{}]",
                c.key,
                c.operator,
                values.join(", ")
            ));
        }
        text
    }
}

/// The evaluated policy of one function's role.
#[derive(Debug, Clone)]
pub struct RolePolicy {
    pub function: String,
    pub role: String,
    pub statements: Vec<Statement>,
    /// `ManagedPolicyArns` of the role: not evaluated (they allow nothing here).
    pub managed_policy_arns: Vec<String>,
}

/// The outcome of one authorisation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The indexes of every Allow statement that matches.
    Allowed(Vec<usize>),
    ExplicitDeny(usize),
    ImplicitDeny,
}

impl RolePolicy {
    /// The role of `function` (a logical id of `template`), evaluated for `deployment`.
    pub fn for_function(template: &Value, function: &str, deployment: &Deployment) -> Result<Self> {
        let eval = Evaluator::new(template, deployment)?;
        let resources = template
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| anyhow!("the template has no Resources"))?;
        let res = resources
            .get(function)
            .ok_or_else(|| anyhow!("no resource {function} in the template"))?;
        let role_value = res
            .get("Properties")
            .and_then(|p| p.get("Role"))
            .ok_or_else(|| {
                anyhow!("{function} has no Role (SAM-generated roles are not evaluated)")
            })?;
        let role = referenced_resource(role_value).ok_or_else(|| {
            anyhow!("{function}: Role is not a !GetAtt/!Ref of a role in this template")
        })?;
        let role_res = resources
            .get(role.as_str())
            .ok_or_else(|| anyhow!("{function}: role {role} is not in the template"))?;
        let props = role_res.get("Properties").cloned().unwrap_or(Value::Null);
        let props = eval.resolve(&props);

        let mut statements = Vec::new();
        let mut conditional_policies = Vec::new();
        collect_items(props.get("Policies"), false, &mut conditional_policies);
        for (policy, conditional) in conditional_policies {
            let name = match policy.get("PolicyName") {
                Some(Resolved::Str(s)) => s.clone(),
                _ => "inline".into(),
            };
            read_document(
                policy.get("PolicyDocument"),
                &name,
                conditional,
                &mut statements,
            )
            .with_context(|| format!("{role}: policy {name}"))?;
        }
        // Policies attached from outside the role.
        for (key, other) in resources {
            let Some(id) = key.as_str() else { continue };
            let kind = other
                .get("Type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !matches!(
                kind,
                "AWS::IAM::Policy" | "AWS::IAM::RolePolicy" | "AWS::IAM::ManagedPolicy"
            ) {
                continue;
            }
            let Some(p) = other.get("Properties") else {
                continue;
            };
            let mut attached = p
                .get("Roles")
                .and_then(Value::as_sequence)
                .map(|roles| {
                    roles
                        .iter()
                        .any(|r| referenced_resource(r).as_deref() == Some(role.as_str()))
                })
                .unwrap_or(false);
            if let Some(r) = p.get("RoleName") {
                attached |= referenced_resource(r).as_deref() == Some(role.as_str());
            }
            if !attached {
                continue;
            }
            let conditional = match other.get("Condition").and_then(Value::as_str) {
                Some(c) => match eval.condition(c)? {
                    Some(false) => continue,
                    Some(true) => false,
                    None => true,
                },
                None => false,
            };
            let name = match eval.resolve(p).get("PolicyName") {
                Some(Resolved::Str(s)) => s.clone(),
                _ => id.to_string(),
            };
            read_document(
                eval.resolve(p).get("PolicyDocument"),
                &name,
                conditional,
                &mut statements,
            )
            .with_context(|| format!("{id}: policy document"))?;
        }
        let managed_policy_arns = props
            .get("ManagedPolicyArns")
            .map(|m| m.patterns().iter().map(|p| p.to_string()).collect())
            .unwrap_or_default();
        Ok(RolePolicy {
            function: function.to_string(),
            role,
            statements,
            managed_policy_arns,
        })
    }

    pub fn decide(&self, access: &Access) -> Decision {
        let mut allowed = Vec::new();
        for (i, s) in self.statements.iter().enumerate() {
            if !s.matches(access) {
                continue;
            }
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny(i),
                Effect::Allow => allowed.push(i),
            }
        }
        if allowed.is_empty() {
            Decision::ImplicitDeny
        } else {
            Decision::Allowed(allowed)
        }
    }

    /// Why `access` is refused and what would allow it, in one paragraph.
    pub fn explain_denial(&self, access: &Access, decision: &Decision) -> String {
        let head = format!(
            "{} (role {}) is not allowed {access}",
            self.function, self.role
        );
        if let Decision::ExplicitDeny(i) = decision {
            return format!(
                "{head}: explicitly denied by {}",
                self.statements[*i].describe()
            );
        }
        let with_action: Vec<String> = self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter(|s| s.actions.iter().any(|a| glob(a, &access.action, true)))
            .map(Statement::describe)
            .collect();
        let on_resource: Vec<String> = self
            .statements
            .iter()
            .filter(|s| s.effect == Effect::Allow)
            .filter(|s| {
                s.resources
                    .iter()
                    .any(|r| pattern_matches(r, &access.resource))
            })
            .map(Statement::describe)
            .collect();
        let missing = if with_action.is_empty() {
            match on_resource.first() {
                Some(s) => format!(
                    "missing: {} in a statement on this resource, e.g. {s}",
                    access.action
                ),
                None => format!(
                    "missing: a statement allowing {} on {}",
                    access.action, access.resource
                ),
            }
        } else {
            format!(
                "statements granting {} do not cover this resource or condition: {}",
                access.action,
                with_action.join("; ")
            )
        };
        format!("{head}; {missing}")
    }
}

/// The list items of a `Policies`/`Statement` value, flattening `If`s on unknown conditions
/// (their items are conditional) and dropping `NoValue`.
fn collect_items(value: Option<&Resolved>, conditional: bool, out: &mut Vec<(Resolved, bool)>) {
    match value {
        None | Some(Resolved::NoValue) | Some(Resolved::Null) => {}
        Some(Resolved::List(items)) => {
            for item in items {
                collect_items(Some(item), conditional, out);
            }
        }
        Some(Resolved::Either(options)) => {
            for option in options {
                collect_items(Some(option), true, out);
            }
        }
        Some(other) => out.push((other.clone(), conditional)),
    }
}

fn read_document(
    document: Option<&Resolved>,
    policy: &str,
    conditional: bool,
    out: &mut Vec<Statement>,
) -> Result<()> {
    let Some(document) = document else {
        bail!("no PolicyDocument")
    };
    let mut items = Vec::new();
    collect_items(document.get("Statement"), conditional, &mut items);
    for (index, (statement, conditional)) in items.into_iter().enumerate() {
        let name = match statement.get("Sid") {
            Some(Resolved::Str(s)) => format!("{policy}/{s}"),
            _ => format!("{policy}/#{index}"),
        };
        let effect = match statement.get("Effect") {
            Some(Resolved::Str(e)) if e == "Allow" => Effect::Allow,
            Some(Resolved::Str(e)) if e == "Deny" => Effect::Deny,
            other => bail!("{name}: Effect {other:?}"),
        };
        let texts = |key: &str| -> Result<Vec<String>> {
            statement
                .get(key)
                .map(|v| v.patterns())
                .unwrap_or_default()
                .into_iter()
                .map(|p| match p {
                    Pattern::Text(t) => Ok(t),
                    Pattern::Unknown(why) => Err(anyhow!("{name}: {key} is unknown: {why}")),
                })
                .collect()
        };
        let conditions = match statement.get("Condition") {
            None | Some(Resolved::NoValue) => Vec::new(),
            Some(Resolved::Map(ops)) => {
                let mut tests = Vec::new();
                for (operator, keys) in ops {
                    let Resolved::Map(keys) = keys else {
                        bail!("{name}: Condition {operator} is not a map")
                    };
                    check_operator(operator).with_context(|| name.clone())?;
                    for (key, values) in keys {
                        tests.push(ConditionTest {
                            operator: operator.clone(),
                            key: key.clone(),
                            values: values.patterns(),
                        });
                    }
                }
                tests
            }
            Some(other) => bail!("{name}: Condition {other:?}"),
        };
        let (actions, not_actions) = (texts("Action")?, texts("NotAction")?);
        out.push(Statement {
            name,
            effect,
            actions,
            not_actions,
            resources: statement
                .get("Resource")
                .map(|v| v.patterns())
                .unwrap_or_default(),
            not_resources: statement
                .get("NotResource")
                .map(|v| v.patterns())
                .unwrap_or_default(),
            conditions,
            conditional,
        });
    }
    Ok(())
}

const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Bool",
    "Null",
];

/// The base operator (without `ForAllValues:`/`ForAnyValue:` and `IfExists`), if supported.
fn split_operator(operator: &str) -> (Option<&str>, &str, bool) {
    let (set, rest) = match operator.split_once(':') {
        Some((set, rest)) => (Some(set), rest),
        None => (None, operator),
    };
    match rest.strip_suffix("IfExists") {
        Some(base) => (set, base, true),
        None => (set, rest, false),
    }
}

fn check_operator(operator: &str) -> Result<()> {
    let (set, base, _) = split_operator(operator);
    if !OPERATORS.contains(&base) || !matches!(set, None | Some("ForAllValues" | "ForAnyValue")) {
        bail!("condition operator {operator} is not supported by the evaluator");
    }
    Ok(())
}

fn condition_holds(test: &ConditionTest, context: &BTreeMap<String, Vec<String>>) -> bool {
    let (set, base, if_exists) = split_operator(&test.operator);
    let negated = base.contains("Not");
    // Condition keys are case-insensitive.
    let present = context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&test.key))
        .map(|(_, v)| v.as_slice());
    if base == "Null" {
        let wants_absent = test
            .values
            .iter()
            .any(|v| matches!(v, Pattern::Text(t) if t == "true"));
        return present.is_none() == wants_absent;
    }
    let matches_value = |policy: &str, value: &str| match base {
        "StringEquals" | "StringNotEquals" => policy == value,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" | "Bool" => {
            policy.eq_ignore_ascii_case(value)
        }
        // ARN comparisons take wildcards in both the Equals and Like forms.
        _ => glob(policy, value, false),
    };
    // Whether `value` matches any of the policy's values (unknown ones never do).
    let one = |value: &str| -> bool {
        test.values.iter().any(|p| match p {
            Pattern::Unknown(_) => false,
            Pattern::Text(t) => matches_value(t, value),
        })
    };
    match set {
        Some("ForAllValues") => {
            present.is_none_or(|values| values.iter().all(|v| one(v) != negated))
        }
        Some("ForAnyValue") => {
            present.is_some_and(|values| values.iter().any(|v| one(v) != negated))
        }
        _ => match present {
            // A missing key fails a condition, except with IfExists or a negated operator.
            None => if_exists || negated,
            Some(values) => {
                if negated {
                    !values.iter().any(|v| one(v))
                } else {
                    values.iter().any(|v| one(v))
                }
            }
        },
    }
}

fn pattern_matches(pattern: &Pattern, value: &str) -> bool {
    match pattern {
        Pattern::Text(p) => glob(p, value, false),
        Pattern::Unknown(_) => false,
    }
}

/// IAM wildcards: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            value.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The logical id a `!GetAtt X.Arn`, `!Ref X` (or their long forms) points at.
fn referenced_resource(value: &Value) -> Option<String> {
    let (name, arg) = intrinsic(value)?;
    match name.as_str() {
        "GetAtt" => match arg {
            Value::String(s) => s.split('.').next().map(str::to_string),
            Value::Sequence(parts) => parts.first()?.as_str().map(str::to_string),
            _ => None,
        },
        "Ref" => arg.as_str().map(str::to_string),
        _ => None,
    }
}

/// `(function name without Fn::, argument)` of a short-form tag or a one-key long-form map.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(t) => Some((
            t.tag.to_string().trim_start_matches('!').to_string(),
            &t.value,
        )),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" || k == "Condition" {
                Some((k.to_string(), v))
            } else {
                k.strip_prefix("Fn::").map(|n| (n.to_string(), v))
            }
        }
        _ => None,
    }
}

struct Evaluator<'a> {
    deployment: &'a Deployment,
    parameters: Mapping,
    resources: Mapping,
    conditions: Mapping,
}

impl<'a> Evaluator<'a> {
    fn new(template: &Value, deployment: &'a Deployment) -> Result<Self> {
        let section = |name: &str| {
            template
                .get(name)
                .and_then(Value::as_mapping)
                .cloned()
                .unwrap_or_default()
        };
        let parameters = section("Parameters");
        for name in deployment.parameters.keys() {
            if !parameters.contains_key(name.as_str()) {
                bail!("the deployment sets {name}, which is not a parameter of the template");
            }
        }
        Ok(Evaluator {
            deployment,
            parameters,
            resources: section("Resources"),
            conditions: section("Conditions"),
        })
    }

    /// A named condition: true, false, or undecided for this deployment.
    fn condition(&self, name: &str) -> Result<Option<bool>> {
        let body = self
            .conditions
            .get(name)
            .ok_or_else(|| anyhow!("no condition {name} in the template"))?;
        Ok(self.truth(body))
    }

    fn truth(&self, value: &Value) -> Option<bool> {
        if let Value::Bool(b) = value {
            return Some(*b);
        }
        let (name, arg) = intrinsic(value)?;
        let args = || arg.as_sequence().cloned().unwrap_or_default();
        match name.as_str() {
            "Condition" => self.condition(arg.as_str()?).ok().flatten(),
            "Not" => self.truth(args().first()?).map(|b| !b),
            "And" => args().iter().try_fold(Some(true), |acc, c| {
                Some(match (acc, self.truth(c)) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                })
            })?,
            "Or" => args().iter().try_fold(Some(false), |acc, c| {
                Some(match (acc, self.truth(c)) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                })
            })?,
            "Equals" => {
                let a = args();
                let (x, y) = (self.resolve(a.first()?), self.resolve(a.get(1)?));
                match (&x, &y) {
                    (Resolved::Unknown(_), _) | (_, Resolved::Unknown(_)) => None,
                    (Resolved::Either(_), _) | (_, Resolved::Either(_)) => None,
                    _ => Some(x == y),
                }
            }
            _ => None,
        }
    }

    fn resolve(&self, value: &Value) -> Resolved {
        if let Some((name, arg)) = intrinsic(value) {
            return self.function(&name, arg);
        }
        match value {
            Value::Null => Resolved::Null,
            Value::Bool(b) => Resolved::Bool(*b),
            Value::Number(n) => Resolved::Str(n.to_string()),
            Value::String(s) => Resolved::Str(s.clone()),
            Value::Sequence(items) => Resolved::List(
                items
                    .iter()
                    .map(|i| self.resolve(i))
                    .filter(|r| *r != Resolved::NoValue)
                    .collect(),
            ),
            Value::Mapping(m) => Resolved::Map(
                m.iter()
                    .filter_map(|(k, v)| {
                        let v = self.resolve(v);
                        (v != Resolved::NoValue).then(|| (key_text(k), v))
                    })
                    .collect(),
            ),
            Value::Tagged(t) => Resolved::Unknown(format!("tag {}", t.tag)),
        }
    }

    fn function(&self, name: &str, arg: &Value) -> Resolved {
        let args = || arg.as_sequence().cloned().unwrap_or_default();
        match name {
            "Ref" => match arg.as_str() {
                Some(target) => self.reference(target),
                None => Resolved::Unknown("Ref of a non-string".into()),
            },
            "GetAtt" => {
                let (res, attr) = match arg {
                    Value::String(s) => match s.split_once('.') {
                        Some((r, a)) => (r.to_string(), a.to_string()),
                        None => return Resolved::Unknown(format!("GetAtt {s}")),
                    },
                    Value::Sequence(p) if p.len() == 2 => (
                        p[0].as_str().unwrap_or_default().to_string(),
                        p[1].as_str().unwrap_or_default().to_string(),
                    ),
                    _ => return Resolved::Unknown("GetAtt form".into()),
                };
                self.attribute(&res, &attr)
            }
            "Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.clone(), BTreeMap::new()),
                    Value::Sequence(p) if !p.is_empty() => {
                        let vars = match p.get(1).map(|v| self.resolve(v)) {
                            Some(Resolved::Map(m)) => m,
                            _ => BTreeMap::new(),
                        };
                        (p[0].as_str().unwrap_or_default().to_string(), vars)
                    }
                    _ => return Resolved::Unknown("Sub form".into()),
                };
                self.substitute(&text, &vars)
            }
            "If" => {
                let a = args();
                let (Some(cond), Some(yes), Some(no)) =
                    (a.first().and_then(Value::as_str), a.get(1), a.get(2))
                else {
                    return Resolved::Unknown("If form".into());
                };
                match self.condition(cond) {
                    Ok(Some(true)) => self.resolve(yes),
                    Ok(Some(false)) => self.resolve(no),
                    Ok(None) => {
                        let options: Vec<Resolved> = [self.resolve(yes), self.resolve(no)]
                            .into_iter()
                            .filter(|r| *r != Resolved::NoValue)
                            .collect();
                        Resolved::Either(options)
                    }
                    Err(e) => Resolved::Unknown(format!("{e}")),
                }
            }
            "Join" => {
                let a = args();
                let (Some(sep), Some(list)) = (a.first().and_then(Value::as_str), a.get(1)) else {
                    return Resolved::Unknown("Join form".into());
                };
                match self.resolve(list) {
                    Resolved::List(items) => {
                        let mut parts = Vec::new();
                        for item in items {
                            match item {
                                Resolved::Str(s) => parts.push(s),
                                other => return unknown_from(&other, "Join"),
                            }
                        }
                        Resolved::Str(parts.join(sep))
                    }
                    other => unknown_from(&other, "Join"),
                }
            }
            "Select" => {
                let a = args();
                let index = a.first().map(|i| self.resolve(i)).and_then(|i| match i {
                    Resolved::Str(s) => s.parse::<usize>().ok(),
                    _ => None,
                });
                match (index, a.get(1).map(|l| self.resolve(l))) {
                    (Some(i), Some(Resolved::List(items))) => items
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| Resolved::Unknown("Select out of range".into())),
                    _ => Resolved::Unknown("Select".into()),
                }
            }
            "Split" => {
                let a = args();
                match (
                    a.first().and_then(Value::as_str),
                    a.get(1).map(|s| self.resolve(s)),
                ) {
                    (Some(sep), Some(Resolved::Str(s))) => {
                        Resolved::List(s.split(sep).map(|p| Resolved::Str(p.to_string())).collect())
                    }
                    _ => Resolved::Unknown("Split".into()),
                }
            }
            other => Resolved::Unknown(format!("Fn::{other}")),
        }
    }

    fn reference(&self, target: &str) -> Resolved {
        let d = self.deployment;
        match target {
            "AWS::NoValue" => return Resolved::NoValue,
            "AWS::Region" => return Resolved::Str(d.region.clone()),
            "AWS::AccountId" => return Resolved::Str(d.account.clone()),
            "AWS::StackName" => return Resolved::Str(d.stack_name.clone()),
            "AWS::Partition" => return Resolved::Str("aws".into()),
            "AWS::URLSuffix" => return Resolved::Str("amazonaws.com".into()),
            _ => {}
        }
        if let Some(p) = self.parameters.get(target) {
            return match d.parameters.get(target) {
                None => Resolved::Unknown(format!("parameter {target} not set")),
                Some(v) => {
                    let kind = p.get("Type").and_then(Value::as_str).unwrap_or("String");
                    if kind.starts_with("List<") || kind == "CommaDelimitedList" {
                        Resolved::List(
                            v.split(',')
                                .filter(|s| !s.is_empty())
                                .map(|s| Resolved::Str(s.trim().to_string()))
                                .collect(),
                        )
                    } else {
                        Resolved::Str(v.clone())
                    }
                }
            };
        }
        match self.kind(target) {
            Some("AWS::SecretsManager::Secret") => self.secret_arn(target),
            Some(_) => self.physical(target),
            None => Resolved::Unknown(format!("Ref {target}: no such parameter or resource")),
        }
    }

    fn kind(&self, logical: &str) -> Option<&str> {
        self.resources
            .get(logical)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
    }

    /// The physical name: given by the deployment, else the resource's name property, else
    /// `<stack>-<logical id>`.
    fn physical(&self, logical: &str) -> Resolved {
        if let Some(name) = self.deployment.physical_names.get(logical) {
            return Resolved::Str(name.clone());
        }
        let props = self
            .resources
            .get(logical)
            .and_then(|r| r.get("Properties"));
        for key in [
            "TableName",
            "LogGroupName",
            "QueueName",
            "RoleName",
            "FunctionName",
            "Name",
        ] {
            if let Some(v) = props.and_then(|p| p.get(key)) {
                return self.resolve(v);
            }
        }
        Resolved::Str(format!("{}-{logical}", self.deployment.stack_name))
    }

    fn secret_arn(&self, logical: &str) -> Resolved {
        if let Some(arn) = self.deployment.physical_names.get(logical) {
            return Resolved::Str(arn.clone());
        }
        let d = self.deployment;
        map_str(self.physical(logical), |name| {
            format!(
                "arn:aws:secretsmanager:{}:{}:secret:{name}-AbCdEf",
                d.region, d.account
            )
        })
    }

    fn attribute(&self, logical: &str, attr: &str) -> Resolved {
        let d = self.deployment;
        let (r, a) = (&d.region, &d.account);
        let name = self.physical(logical);
        match (self.kind(logical), attr) {
            (Some("AWS::DynamoDB::Table"), "Arn") => {
                map_str(name, |n| format!("arn:aws:dynamodb:{r}:{a}:table/{n}"))
            }
            (Some("AWS::Logs::LogGroup"), "Arn") => {
                map_str(name, |n| format!("arn:aws:logs:{r}:{a}:log-group:{n}:*"))
            }
            (Some("AWS::SQS::Queue"), "Arn") => {
                map_str(name, |n| format!("arn:aws:sqs:{r}:{a}:{n}"))
            }
            (Some("AWS::SQS::Queue"), "QueueName") => name,
            (Some("AWS::IAM::Role"), "Arn") => {
                map_str(name, |n| format!("arn:aws:iam::{a}:role/{n}"))
            }
            (Some("AWS::KMS::Key"), "Arn") => {
                map_str(name, |n| format!("arn:aws:kms:{r}:{a}:key/{n}"))
            }
            (Some(kind), _) => Resolved::Unknown(format!("GetAtt {logical}.{attr} ({kind})")),
            (None, _) => Resolved::Unknown(format!("GetAtt {logical}.{attr}: no such resource")),
        }
    }

    fn substitute(&self, text: &str, vars: &BTreeMap<String, Resolved>) -> Resolved {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Resolved::Unknown(format!("Sub {text}: unclosed ${{"));
            };
            let name = &after[..end];
            rest = &after[end + 1..];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
                continue;
            }
            let value = match vars.get(name) {
                Some(v) => v.clone(),
                None => match name.split_once('.') {
                    Some((res, attr)) => self.attribute(res, attr),
                    None => self.reference(name),
                },
            };
            match value {
                Resolved::Str(s) => out.push_str(&s),
                other => return unknown_from(&other, &format!("Sub {text}")),
            }
        }
        out.push_str(rest);
        Resolved::Str(out)
    }
}

fn map_str(value: Resolved, f: impl Fn(&str) -> String) -> Resolved {
    match value {
        Resolved::Str(s) => Resolved::Str(f(&s)),
        other => unknown_from(&other, "a name"),
    }
}

fn unknown_from(value: &Resolved, what: &str) -> Resolved {
    match value {
        Resolved::Unknown(why) => Resolved::Unknown(format!("{what}: {why}")),
        _ => Resolved::Unknown(format!("{what}: not a known string")),
    }
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
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
