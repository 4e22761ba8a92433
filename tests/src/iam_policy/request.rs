//! What an AWS request needs from IAM: the deployment that names the resources, and the
//! mapping from one recorded call to the authorisations (action, resource, condition keys) IAM
//! makes for it.

use super::*;

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
