//! The run log of the DynamoDB adapter: the latest run record per job and the run leases that
//! keep two runs of a job from overlapping.

use super::*;

#[async_trait::async_trait]
impl RunLog for DynamoStore {
    /// The latest run of each job replaces the previous one.
    async fn record_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        const OP: &str = "PutItem";
        // A record is one item, and DynamoDB refuses an item over 400 KB: the jobs bound their
        // summaries, and this keeps any summary that still outgrows the limit from losing the
        // whole record (timestamp, success, devlake_up), which the metrics page needs.
        let oversized;
        let run = match crate::limits::json_len(&run.summary) {
            n if n > crate::limits::RECORD_ITEM_SUMMARY_MAX_BYTES => {
                tracing::warn!(
                    job = run.job.as_str(),
                    summary_bytes = n,
                    "run summary too large for its record; stored without its lists"
                );
                oversized = RunRecord {
                    summary: serde_json::json!({
                        "status": run.summary.get("status").cloned().unwrap_or_default(),
                        "counts": run.summary.get("counts").cloned().unwrap_or_default(),
                        "truncated": {"summaryBytes": n},
                    }),
                    ..run.clone()
                };
                &oversized
            }
            _ => run,
        };
        let mut item = to_item(OP, run)?;
        item.extend(key(keys::RUN_PK, run.job.as_str()));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(OP, e))?;
        self.note_capacity(Access::Write, out.consumed_capacity());
        Ok(())
    }

    /// One PutItem of the whole list, packed into one string attribute like a project's state:
    /// the metrics page reads it with the run records on every scrape.
    async fn record_connection_health(
        &self,
        record: &ConnectionHealthRecord,
    ) -> Result<(), StoreError> {
        const OP: &str = "PutItem CONNECTION";
        let mut item = key(keys::CONNECTION_PK, keys::HEALTH_SK);
        item.insert(
            CONNECTION_TESTED_AT.into(),
            s(record
                .tested_at
                .to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        let packed = serde_json::to_string(&record.connections).map_err(|e| malformed(OP, e))?;
        item.insert(CONNECTION_LIST.into(), s(packed));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(OP, e))?;
        self.note_capacity(Access::Write, out.consumed_capacity());
        Ok(())
    }

    /// One conditional PutItem: the lease is free (no item) or lapsed (`leaseUntil` before
    /// `now`). The item also carries the table's TTL a day after it lapses, so a lease never
    /// released (a run killed at its timeout) is eventually removed; the condition does not
    /// rely on that, since TTL deletion can lag by days.
    async fn acquire_lease(
        &self,
        job: Job,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Result<(), LeaseHolder>, StoreError> {
        const OP: &str = "PutItem LEASE";
        let mut item = key(keys::LEASE_PK, job.as_str());
        item.insert("holder".into(), s(holder));
        item.insert(
            "acquiredAt".into(),
            s(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        item.insert("leaseUntil".into(), n(until.timestamp_millis()));
        item.insert(
            keys::EXPIRES_AT.into(),
            n((until + chrono::Duration::days(1)).timestamp()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #until < :now")
            .expression_attribute_names("#pk", keys::PK)
            .expression_attribute_names("#until", "leaseUntil")
            .expression_attribute_values(":now", n(now.timestamp_millis()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let Err(e) = result else {
            return Ok(Ok(()));
        };
        let Some(failed) = e.as_service_error().and_then(|e| match e {
            aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => Some(c),
            _ => None,
        }) else {
            return Err(StoreError::from_sdk(OP, e));
        };
        let held = match failed.item() {
            Some(item) => item.clone(),
            // Older DynamoDB Local builds do not return the item: read it.
            None => self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(key(keys::LEASE_PK, job.as_str())))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("GetItem LEASE", e))?
                .item
                .unwrap_or_default(),
        };
        let millis = |name: &str| {
            number(&held, name)
                .and_then(|ms| DateTime::<Utc>::from_timestamp_millis(ms as i64))
                .unwrap_or(now)
        };
        Ok(Err(LeaseHolder {
            holder: string(&held, "holder").unwrap_or("?").to_string(),
            acquired_at: string(&held, "acquiredAt")
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map_or(now, |t| t.with_timezone(&Utc)),
            until: millis("leaseUntil"),
        }))
    }

    /// A PutItem conditional on still being the holder, that marks the lease lapsed
    /// (`leaseUntil` 0). A PutItem rather than a DeleteItem: the automation's role is allowed to
    /// put items only.
    async fn release_lease(
        &self,
        job: Job,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        const OP: &str = "PutItem LEASE";
        let mut item = key(keys::LEASE_PK, job.as_str());
        item.insert("holder".into(), s(holder));
        item.insert("leaseUntil".into(), n(0));
        item.insert(
            keys::EXPIRES_AT.into(),
            n((now + chrono::Duration::days(1)).timestamp()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#holder = :holder")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_values(":holder", s(holder))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                tracing::warn!(
                    job = job.as_str(),
                    holder,
                    "run lease lapsed and was taken by another run before release"
                );
                Ok(())
            }
            Err(e) => Err(StoreError::from_sdk(OP, e)),
        }
    }
}
