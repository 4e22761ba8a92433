//! Decoding of recorded calls: operations, tables, keys and transaction parts.

use super::*;
use serde_json::json;

fn dynamo(op: &str, body: Value) -> RecordedCall {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-target",
        format!("DynamoDB_20120810.{op}").parse().unwrap(),
    );
    decode("F", "/", &headers, &Bytes::from(body.to_string()), "pk")
}

#[test]
fn a_transaction_has_one_part_per_item() {
    let call = dynamo(
        "TransactWriteItems",
        json!({"TransactItems": [
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "FAILURE#2026-11-28"}, "sk": {"S": "x"}}}},
            {"Update": {"TableName": "t", "Key": {"pk": {"S": "PROJECT"}, "sk": {"S": "p"}}}},
        ]}),
    );
    assert_eq!(call.service, AwsService::DynamoDb);
    assert_eq!(call.operation, "TransactWriteItems");
    let elements: Vec<_> = call
        .tables
        .iter()
        .map(|p| (p.element.clone().unwrap(), p.partition_keys.clone()))
        .collect();
    assert_eq!(
        elements,
        vec![
            ("Put".to_string(), vec!["FAILURE#2026-11-28".to_string()]),
            ("Update".to_string(), vec!["PROJECT".to_string()]),
        ]
    );
}

#[test]
fn batches_name_each_table_and_queries_their_partition_and_index() {
    let call = dynamo(
        "BatchWriteItem",
        json!({"RequestItems": {"t": [
            {"PutRequest": {"Item": {"pk": {"S": "BLUEPRINT"}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "RERUN"}}}},
        ]}}),
    );
    assert_eq!(call.tables[0].table, "t");
    assert_eq!(call.tables[0].partition_keys, vec!["BLUEPRINT", "RERUN"]);

    let call = dynamo(
        "Query",
        json!({"TableName": "t", "IndexName": "byDay",
               "KeyConditionExpression": "#pk = :pk AND #sk >= :from",
               "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk"},
               "ExpressionAttributeValues": {":pk": {"S": "PROJECT"}, ":from": {"S": "a"}}}),
    );
    assert_eq!(call.tables[0].index.as_deref(), Some("byDay"));
    assert_eq!(call.tables[0].partition_keys, vec!["PROJECT"]);
}

#[test]
fn secrets_and_unknown_requests() {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-target",
        "secretsmanager.GetSecretValue".parse().unwrap(),
    );
    let call = decode(
        "F",
        "/",
        &headers,
        &Bytes::from(json!({"SecretId": "arn:s"}).to_string()),
        "pk",
    );
    assert_eq!(
        (
            call.service,
            call.operation.as_str(),
            call.secret_id.as_deref()
        ),
        (AwsService::SecretsManager, "GetSecretValue", Some("arn:s"))
    );

    let call = decode("F", "/", &HeaderMap::new(), &Bytes::from("{}"), "pk");
    assert_eq!(call.service, AwsService::Unknown);
    assert!(call.problem.is_some());
}
