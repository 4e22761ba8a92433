//! A table's CreateTable pieces read from its `AWS::DynamoDB::Table` resource in `template.yaml`,
//! so every test table is the deployed one: keys, indexes, billing and TTL have one definition.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    LocalSecondaryIndex, Projection, ProjectionType, ProvisionedThroughput, ScalarAttributeType,
    StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};
use serde_norway::Value;

use super::repo_root;

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
