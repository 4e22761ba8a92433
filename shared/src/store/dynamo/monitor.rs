//! The monitor's store on DynamoDB: cursor, blueprint → project cache, project states and
//! their transactional commits with failure events, and the rerun claims.

use super::*;

#[async_trait::async_trait]
impl MonitorStore for DynamoStore {
    async fn load_cursor(&self) -> Result<Option<MonitorCursor>, StoreError> {
        const OP: &str = "GetItem";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::MONITOR_PK, keys::CURSOR_SK)))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk(OP, e))?;
        self.note_capacity(Access::Read, out.consumed_capacity());
        out.item.map(|item| from_item(OP, item)).transpose()
    }

    async fn save_cursor(
        &self,
        cursor: &MonitorCursor,
        loaded_revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "PutItem";
        let mut saved = cursor.clone();
        saved.revision = loaded_revision.map_or(1, |r| r + 1);
        let mut item = to_item(OP, &saved)?;
        item.extend(key(keys::MONITOR_PK, keys::CURSOR_SK));
        let mut request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_consumed_capacity(ReturnConsumedCapacity::Total);
        request = match loaded_revision {
            None => request.condition_expression("attribute_not_exists(pk)"),
            Some(r) => request
                .condition_expression("#rev = :expected")
                .expression_attribute_names("#rev", "revision")
                .expression_attribute_values(":expected", n(r)),
        };
        match request.send().await {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                Ok(true)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::from_sdk(OP, e)),
        }
    }

    async fn blueprint_projects(
        &self,
        ids: &[u64],
    ) -> Result<HashMap<u64, CachedBlueprint>, StoreError> {
        let unique: HashSet<u64> = ids.iter().copied().collect();
        let keys_ = unique
            .into_iter()
            .map(|id| key(keys::BLUEPRINT_PK, keys::blueprint_sk(id)))
            .collect();
        let items = self.batch_get(keys_, None, false).await?;
        items
            .into_iter()
            .map(|item| {
                let b: BlueprintItem = from_item("BatchGetItem", item)?;
                Ok((
                    b.blueprint_id,
                    CachedBlueprint {
                        project_name: b.project_name,
                        resolved_at: b.updated_at,
                    },
                ))
            })
            .collect()
    }

    async fn delete_project(
        &self,
        name: &str,
        expected_revision: Option<u64>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "DeleteItem";
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::PROJECT_PK, name.to_string())));
        request = match expected_revision {
            None => request.condition_expression("attribute_not_exists(pk)"),
            // Items written before revisions existed read as revision 0.
            Some(r) => request
                .condition_expression(if r == 0 {
                    "attribute_exists(pk) AND (attribute_not_exists(#rev) OR #rev = :expected)"
                } else {
                    "#rev = :expected"
                })
                .expression_attribute_names("#rev", REVISION)
                .expression_attribute_values(":expected", n(r)),
        };
        match request.send().await {
            Ok(_) => Ok(expected_revision.is_some()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(StoreError::from_sdk(OP, e)),
        }
    }

    async fn save_blueprint_projects(
        &self,
        entries: &[(u64, String)],
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let items = entries
            .iter()
            .map(|(id, name)| {
                let mut item = to_item(
                    "BatchWriteItem",
                    &BlueprintItem {
                        blueprint_id: *id,
                        project_name: name.clone(),
                        updated_at: now,
                    },
                )?;
                item.extend(key(keys::BLUEPRINT_PK, keys::blueprint_sk(*id)));
                Ok(item)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.batch_put(items).await
    }

    async fn project_states(
        &self,
        names: &[String],
    ) -> Result<HashMap<String, StoredProject>, StoreError> {
        let unique: HashSet<&String> = names.iter().collect();
        let keys_ = unique
            .into_iter()
            .map(|name| key(keys::PROJECT_PK, name.clone()))
            .collect();
        // Strongly consistent: the revision read here guards the next write.
        let items = self.batch_get(keys_, None, true).await?;
        items
            .into_iter()
            .map(|item| {
                let stored = decode_project("BatchGetItem", item)?;
                Ok((stored.state.project_name.clone(), stored))
            })
            .collect()
    }

    async fn all_projects(&self) -> Result<Vec<StoredProject>, StoreError> {
        self.all_project_states().await
    }

    async fn recorded_failures(
        &self,
        events: &[FailureEvent],
    ) -> Result<HashSet<String>, StoreError> {
        let keys_ = events.iter().map(failure_key).collect();
        let items = self.batch_get(keys_, Some("sk"), true).await?;
        // The sort key is `<finishedAt>#<pipelineId>`, which is exactly `FailureEvent::key`.
        Ok(items
            .iter()
            .filter_map(|item| string(item, keys::SK).map(String::from))
            .collect())
    }

    async fn failures_on(&self, day: NaiveDate) -> Result<Vec<FailureEvent>, StoreError> {
        const OP: &str = "Query FAILURE";
        let mut events = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_values(":pk", s(keys::failure_pk(day)))
                .set_exclusive_start_key(start_key)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk(OP, e))?;
            self.note_capacity(Access::Read, page.consumed_capacity());
            for item in page.items.unwrap_or_default() {
                events.push(from_item(OP, item)?);
            }
            start_key = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(events);
            }
        }
    }

    async fn commit_project(&self, commit: ProjectCommit<'_>) -> Result<CommitOutcome, StoreError> {
        const OP: &str = "TransactWriteItems";
        if commit.events.len() > MAX_EVENTS_PER_COMMIT {
            return Err(StoreError::Failed {
                source: None,
                operation: OP.into(),
                message: format!(
                    "{} events in one commit; at most {MAX_EVENTS_PER_COMMIT} fit a transaction",
                    commit.events.len()
                ),
            });
        }
        let mut actions = Vec::with_capacity(commit.events.len() + 1);
        for event in commit.events {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(failure_item(event, commit.retention)?))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(|e| malformed(OP, e))?;
            actions.push(TransactWriteItem::builder().put(put).build());
        }
        actions.push(
            TransactWriteItem::builder()
                .update(self.project_update(&commit)?)
                .build(),
        );
        let err = match self
            .client
            .transact_write_items()
            .set_transact_items(Some(actions))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
        {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                return Ok(CommitOutcome::Committed);
            }
            Err(e) => e,
        };
        let Some(canceled) = err
            .as_service_error()
            .and_then(|e| match e {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                _ => None,
            })
        else {
            return Err(StoreError::from_sdk(OP, err));
        };
        // One reason per action, in order: the events, then the project update.
        let reasons = canceled.cancellation_reasons();
        let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
        let recorded: Vec<String> = commit
            .events
            .iter()
            .enumerate()
            .filter(|(i, _)| code(*i) == "ConditionalCheckFailed")
            .map(|(_, e)| e.key())
            .collect();
        if !recorded.is_empty() {
            return Ok(CommitOutcome::AlreadyRecorded(recorded));
        }
        let all: Vec<&str> = (0..=commit.events.len()).map(code).collect();
        if code(commit.events.len()) == "ConditionalCheckFailed"
            || all.contains(&"TransactionConflict")
        {
            return Ok(CommitOutcome::Conflict);
        }
        let transient = all
            .iter()
            .any(|c| matches!(*c, "ThrottlingError" | "ProvisionedThroughputExceeded"));
        let message = format!("transaction canceled: [{}]", all.join(", "));
        Err(if transient {
            StoreError::Unavailable {
                source: None,
                operation: OP.into(),
                message,
            }
        } else {
            StoreError::Failed {
                source: None,
                operation: OP.into(),
                message,
            }
        })
    }

    async fn claim_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        max: u32,
        now: DateTime<Utc>,
        lease: chrono::Duration,
    ) -> Result<RerunClaim, StoreError> {
        const OP: &str = "UpdateItem";
        if max == 0 {
            return Ok(RerunClaim::Exhausted);
        }
        let expires = (now + lease).timestamp_millis();
        // A new failure of the pipeline takes the next slot, if one is left.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::RERUN_PK, pipeline_id.to_string())))
            .update_expression(
                "SET #count = if_not_exists(#count, :zero) + :one, #last = :key, #pid = :pid, #at = :now, #st = :pending, #exp = :exp",
            )
            .condition_expression(
                "attribute_not_exists(pk) OR (#count < :max AND #last <> :key)",
            )
            .expression_attribute_names("#count", "reruns")
            .expression_attribute_names("#last", "lastFailureKey")
            .expression_attribute_names("#pid", "pipelineId")
            .expression_attribute_names("#at", "lastRerunAt")
            .expression_attribute_names("#st", rerun::STATE)
            .expression_attribute_names("#exp", rerun::EXPIRES)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max))
            .expression_attribute_values(":key", s(failure_key))
            .expression_attribute_values(":pid", n(pipeline_id))
            .expression_attribute_values(":pending", s(rerun::PENDING))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(
                ":now",
                s(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        let failed = match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                let attempt = out
                    .attributes
                    .as_ref()
                    .and_then(|a| number(a, "reruns"))
                    .unwrap_or(1);
                return Ok(RerunClaim::Granted {
                    attempt: attempt as u32,
                });
            }
            Err(e) => match e.as_service_error().and_then(|e| match e {
                aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => Some(c.item().cloned()),
                _ => None,
            }) {
                Some(item) => item,
                None => return Err(StoreError::from_sdk(OP, e)),
            },
        };
        let old = match failed {
            Some(item) => item,
            // Older DynamoDB Local builds do not return the item: read it.
            None => self.rerun_item(pipeline_id).await?,
        };
        if string(&old, "lastFailureKey") != Some(failure_key) {
            return Ok(RerunClaim::Exhausted);
        }
        // Items written before claims had a state were settled when written.
        match string(&old, rerun::STATE).unwrap_or(rerun::DONE) {
            rerun::DONE => return Ok(RerunClaim::AlreadyDone),
            rerun::PENDING
                if number(&old, rerun::EXPIRES).unwrap_or(0) as i64 >= now.timestamp_millis() =>
            {
                return Ok(RerunClaim::InProgress)
            }
            _ => {}
        }
        // Released, or its lease ended: take this failure's claim again (same slot). The
        // condition makes one of several concurrent runs win.
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::RERUN_PK, pipeline_id.to_string())))
            .update_expression("SET #at = :now, #st = :pending, #exp = :exp")
            .condition_expression(
                "#last = :key AND (#st = :released OR (#st = :pending AND #exp < :nowms))",
            )
            .expression_attribute_names("#last", "lastFailureKey")
            .expression_attribute_names("#at", "lastRerunAt")
            .expression_attribute_names("#st", rerun::STATE)
            .expression_attribute_names("#exp", rerun::EXPIRES)
            .expression_attribute_values(":key", s(failure_key))
            .expression_attribute_values(":pending", s(rerun::PENDING))
            .expression_attribute_values(":released", s(rerun::RELEASED))
            .expression_attribute_values(":exp", n(expires))
            .expression_attribute_values(":nowms", n(now.timestamp_millis()))
            .expression_attribute_values(
                ":now",
                s(now.to_rfc3339_opts(SecondsFormat::Millis, true)),
            )
            .return_values(ReturnValue::AllNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                let attempt = out
                    .attributes
                    .as_ref()
                    .and_then(|a| number(a, "reruns"))
                    .unwrap_or(1);
                Ok(RerunClaim::Granted {
                    attempt: attempt as u32,
                })
            }
            Err(e) if is_conditional_failure(&e) => Ok(RerunClaim::InProgress),
            Err(e) => Err(StoreError::from_sdk(OP, e)),
        }
    }

    async fn settle_rerun(
        &self,
        pipeline_id: u64,
        failure_key: &str,
        settlement: RerunSettlement,
    ) -> Result<bool, StoreError> {
        let state = match settlement {
            RerunSettlement::Done => rerun::DONE,
            RerunSettlement::Released => rerun::RELEASED,
        };
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(keys::RERUN_PK, pipeline_id.to_string())))
            .update_expression("SET #st = :state")
            .condition_expression("#last = :key AND #st <> :done")
            .expression_attribute_names("#last", "lastFailureKey")
            .expression_attribute_names("#st", rerun::STATE)
            .expression_attribute_values(":key", s(failure_key))
            .expression_attribute_values(":done", s(rerun::DONE))
            .expression_attribute_values(":state", s(state))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(out) => {
                self.note_capacity(Access::Write, out.consumed_capacity());
                Ok(true)
            }
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(StoreError::from_sdk("UpdateItem", e)),
        }
    }

    async fn pending_reruns(&self, now: DateTime<Utc>) -> Result<Vec<PendingRerun>, StoreError> {
        let mut pending = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .filter_expression("#st = :released OR (#st = :pending AND #exp < :nowms)")
                .expression_attribute_names("#pk", keys::PK)
                .expression_attribute_names("#st", rerun::STATE)
                .expression_attribute_names("#exp", rerun::EXPIRES)
                .expression_attribute_values(":pk", s(keys::RERUN_PK))
                .expression_attribute_values(":pending", s(rerun::PENDING))
                .expression_attribute_values(":released", s(rerun::RELEASED))
                .expression_attribute_values(":nowms", n(now.timestamp_millis()))
                .set_exclusive_start_key(start_key)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("Query RERUN", e))?;
            self.note_capacity(Access::Read, page.consumed_capacity());
            for item in page.items.unwrap_or_default() {
                if let (Some(pipeline_id), Some(failure_key)) =
                    (number(&item, "pipelineId"), string(&item, "lastFailureKey"))
                {
                    pending.push(PendingRerun {
                        pipeline_id,
                        failure_key: failure_key.to_string(),
                    });
                }
            }
            start_key = page.last_evaluated_key.filter(|k| !k.is_empty());
            if start_key.is_none() {
                return Ok(pending);
            }
        }
    }
}
