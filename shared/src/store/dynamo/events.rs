//! The events function's own item, `EVENTS` / `RECEIVED` (see `store::events`).

use aws_sdk_dynamodb::types::ReturnConsumedCapacity;
use chrono::SecondsFormat;

use super::*;

#[async_trait::async_trait]
impl EventStore for DynamoStore {
    /// One conditional UpdateItem of `EVENTS` / `RECEIVED`. `receivedAt` is a fixed-width UTC
    /// timestamp, so string order is time order.
    async fn record_received(&self, received: &EventsReceived) -> Result<(), StoreError> {
        const OP: &str = "UpdateItem EVENTS";
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::EVENTS_PK, keys::RECEIVED_SK)))
            .update_expression("SET #at = :at, #pid = :pid, #st = :st, #proj = :proj")
            .condition_expression("attribute_not_exists(#at) OR #at <= :at")
            .expression_attribute_names("#at", "receivedAt")
            .expression_attribute_names("#pid", "pipelineId")
            .expression_attribute_names("#st", "status")
            .expression_attribute_names("#proj", "projectName")
            .expression_attribute_values(
                ":at",
                s(received
                    .received_at
                    .to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .expression_attribute_values(
                ":pid",
                aws_sdk_dynamodb::types::AttributeValue::N(received.pipeline_id.to_string()),
            )
            .expression_attribute_values(":st", s(received.status.clone()))
            .expression_attribute_values(":proj", s(received.project_name.clone()))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                Ok(())
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(StoreError::from_sdk(OP, e)),
        }
    }
}
