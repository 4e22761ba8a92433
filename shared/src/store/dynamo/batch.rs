//! Batch reads and writes of the DynamoDB adapter (`BatchGetItem`/`BatchWriteItem` with their
//! unprocessed-item rounds) and the conditional update a project commit is made of.

use super::*;

impl DynamoStore {
    /// `BatchGetItem` over any number of keys, re-asking for unprocessed ones.
    pub(in crate::store) async fn batch_get(
        &self,
        keys_: Vec<Item>,
        projection: Option<&str>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        const OP: &str = "BatchGetItem";
        let mut found = Vec::new();
        for chunk in keys_.chunks(BATCH_GET_KEYS) {
            let mut pending = chunk.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                let mut ka = KeysAndAttributes::builder()
                    .set_keys(Some(pending))
                    .consistent_read(consistent);
                if let Some(p) = projection {
                    ka = ka.projection_expression(p);
                }
                let ka = ka.build().map_err(|e| malformed(OP, e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, ka)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| StoreError::from_sdk(OP, e))?;
                self.note_capacity(Access::Read, out.consumed_capacity());
                if let Some(mut responses) = out.responses {
                    found.extend(responses.remove(&self.table).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|ka| ka.keys)
                    .unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Unavailable {
                            source: None,
                            operation: OP.into(),
                            message: format!(
                                "{} key(s) left unprocessed (throttled)",
                                pending.len()
                            ),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << round.min(5))).await;
                }
            }
        }
        Ok(found)
    }

    /// `BatchWriteItem` puts, re-sending unprocessed ones.
    pub(in crate::store) async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        const OP: &str = "BatchWriteItem";
        for chunk in items.chunks(BATCH_WRITE_ITEMS) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|e| malformed(OP, e))
                })
                .collect::<Result<_, _>>()?;
            let mut round = 0;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .return_consumed_capacity(ReturnConsumedCapacity::Total)
                    .send()
                    .await
                    .map_err(|e| StoreError::from_sdk(OP, e))?;
                self.note_capacity(Access::Write, out.consumed_capacity());
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    round += 1;
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Unavailable {
                            source: None,
                            operation: OP.into(),
                            message: format!(
                                "{} item(s) left unprocessed (throttled)",
                                pending.len()
                            ),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << round.min(5))).await;
                }
            }
        }
        Ok(())
    }

    /// The update of a project item inside a commit: the packed state is SET, the counter is
    /// ADDed so the item's total moves by exactly the events written in the same transaction, and
    /// the attributes of the unpacked layout are REMOVEd (a no-op once they are gone).
    pub(super) fn project_update(&self, commit: &ProjectCommit<'_>) -> Result<Update, StoreError> {
        const OP: &str = "TransactWriteItems";
        // The metrics page reads failures from this list: it must hold every event this
        // transaction writes, whatever the caller put in the state.
        let mut merged = commit.state.clone();
        merged.add_recent_failures(commit.events);
        let mut names = HashMap::from([
            ("#state".to_string(), PROJECT_STATE.to_string()),
            ("#rev".to_string(), REVISION.to_string()),
            ("#total".to_string(), FAILURES_TOTAL.to_string()),
        ]);
        let mut values = HashMap::from([
            (":state".to_string(), s(packed_project_state(OP, &merged)?)),
            (":added".to_string(), n(commit.events.len())),
        ]);
        let next = commit.expected_revision.map_or(1, |r| r + 1);
        values.insert(":next".into(), n(next));
        let sets = ["#state = :state", "#rev = :next"];
        let mut removes = Vec::new();
        for (i, name) in UNPACKED_PROJECT_ATTRIBUTES.iter().enumerate() {
            names.insert(format!("#u{i}"), name.clone());
            removes.push(format!("#u{i}"));
        }
        let condition = match commit.expected_revision {
            None => "attribute_not_exists(pk)".to_string(),
            Some(r) => {
                values.insert(":expected".into(), n(r));
                if r == 0 {
                    "attribute_not_exists(#rev) OR #rev = :expected".to_string()
                } else {
                    "#rev = :expected".to_string()
                }
            }
        };
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(
                keys::PROJECT_PK,
                commit.state.project_name.clone(),
            )))
            .update_expression(format!(
                "SET {} ADD #total :added REMOVE {}",
                sets.join(", "),
                removes.join(", ")
            ))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| malformed(OP, e))
    }
}
