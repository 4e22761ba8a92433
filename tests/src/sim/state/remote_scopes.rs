//! Remote scopes in the simulated DevLake: what a connection's data source offers, listed in
//! groups and pages as DevLake's remote-scope API does.

use super::*;

impl State {
    pub(crate) fn add_remote_group(
        &mut self,
        plugin: &str,
        connection_id: u64,
        parent: Option<&str>,
        id: &str,
        name: &str,
        full_name: Option<&str>,
    ) -> ApiResult<()> {
        let conn = self.connection_mut(plugin, connection_id)?;
        let list = conn
            .remote
            .entry(parent.unwrap_or("").to_string())
            .or_default();
        if list.iter().any(|e| e.is_group && e.id == id) {
            return Ok(());
        }
        let entry = RemoteEntry {
            is_group: true,
            parent_id: parent.map(str::to_string),
            id: id.to_string(),
            name: name.to_string(),
            full_name: full_name.unwrap_or(name).to_string(),
            data: None,
        };
        let at = list.iter().position(|e| !e.is_group).unwrap_or(list.len());
        list.insert(at, entry);
        Ok(())
    }

    /// Adds (or replaces) a scope in the remote listing; returns its scopeId.
    pub(crate) fn add_remote_scope(
        &mut self,
        plugin: &str,
        connection_id: u64,
        parent: Option<&str>,
        data: Value,
    ) -> ApiResult<String> {
        let Value::Object(mut data) = data else {
            return Err(ApiError::bad("remote scope data must be an object"));
        };
        // A Bitbucket Server repository's numeric id is not part of its scope data: fixtures
        // may give it as `id`, which becomes the listing entry's id (else one is numbered).
        let remote_id = plugins::remote_id_differs(plugin)
            .then(|| data.remove("id"))
            .flatten()
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()));
        let mut data = plugins::canonicalize_scope(plugin, data);
        let scope_id = plugins::scope_id_of(plugin, &data).ok_or_else(|| {
            ApiError::bad(format!(
                "remote scope lacks its id field `{}`",
                plugins::id_field(plugin)
            ))
        })?;
        plugins::normalize_id(plugin, &mut data, &scope_id);
        // Remote data comes fresh from the tool: not yet saved, so zero connection and times.
        data.entry("connectionId").or_insert(json!(0));
        data.entry("createdAt").or_insert(json!(zero_time()));
        data.entry("updatedAt").or_insert(json!(zero_time()));
        data.entry("_raw_data_params").or_insert(json!(""));
        data.entry("_raw_data_table").or_insert(json!(""));
        data.entry("_raw_data_id").or_insert(json!(0));
        data.entry("_raw_data_remark").or_insert(json!(""));
        let (name, full_name) = plugins::scope_names(plugin, &data, &scope_id);
        let conn = self.connection_mut(plugin, connection_id)?;
        let same = |e: &RemoteEntry| {
            !e.is_group
                && e.data
                    .as_ref()
                    .and_then(|d| d.as_object())
                    .is_some_and(|d| {
                        plugins::scope_id_of(plugin, d).as_deref() == Some(scope_id.as_str())
                    })
        };
        let id = if plugins::remote_id_differs(plugin) {
            let entries = || conn.remote.values().flatten().filter(|e| !e.is_group);
            match (remote_id, entries().find(|e| same(e))) {
                (Some(n), _) => n.to_string(),
                (None, Some(old)) => old.id.clone(),
                // Numbered after the largest numeric id so far, as Bitbucket's sequence does.
                (None, None) => (entries()
                    .filter_map(|e| e.id.parse::<u64>().ok())
                    .max()
                    .unwrap_or(0)
                    + 1)
                .to_string(),
            }
        } else {
            scope_id.clone()
        };
        let list = conn
            .remote
            .entry(parent.unwrap_or("").to_string())
            .or_default();
        let entry = RemoteEntry {
            is_group: false,
            parent_id: parent.map(str::to_string),
            id,
            name,
            full_name,
            data: Some(Value::Object(data)),
        };
        match list.iter().position(same) {
            Some(i) => list[i] = entry,
            None => list.push(entry),
        }
        Ok(scope_id)
    }

    /// Takes a scope out of the remote listing (the repository was deleted in the tool); the
    /// saved scope, if any, stays, as it does in DevLake. Returns whether it was listed.
    pub(crate) fn remove_remote_scope(
        &mut self,
        plugin: &str,
        connection_id: u64,
        scope_id: &str,
    ) -> ApiResult<bool> {
        let conn = self.connection_mut(plugin, connection_id)?;
        let mut found = false;
        for list in conn.remote.values_mut() {
            list.retain(|e| {
                let same = !e.is_group
                    && e.data
                        .as_ref()
                        .and_then(|d| d.as_object())
                        .is_some_and(|d| {
                            plugins::scope_id_of(plugin, d).as_deref() == Some(scope_id)
                        });
                found |= same;
                !same
            });
        }
        Ok(found)
    }

    /// One page of remote children; page numbers are 1-based.
    pub(crate) fn remote_page(
        &self,
        plugin: &str,
        connection_id: u64,
        group: &str,
        page: usize,
        per_page: usize,
    ) -> ApiResult<(Vec<Value>, bool)> {
        let conn = self.connection(plugin, connection_id)?;
        let Some(list) = conn.remote.get(group) else {
            return Ok((Vec::new(), false));
        };
        let start = (page.max(1) - 1) * per_page;
        let children: Vec<Value> = list
            .iter()
            .skip(start)
            .take(per_page)
            .map(RemoteEntry::to_json)
            .collect();
        let more = start + per_page < list.len();
        Ok((children, more))
    }

    pub(crate) fn remote_search(
        &self,
        plugin: &str,
        connection_id: u64,
        needle: &str,
    ) -> ApiResult<Vec<Value>> {
        let conn = self.connection(plugin, connection_id)?;
        let needle = needle.to_lowercase();
        let mut out = Vec::new();
        for list in conn.remote.values() {
            for e in list.iter().filter(|e| !e.is_group) {
                if e.full_name.to_lowercase().contains(&needle) {
                    let mut j = e.to_json();
                    j["parentId"] = Value::Null;
                    out.push(j);
                }
            }
        }
        out.sort_by(|a, b| a["fullName"].as_str().cmp(&b["fullName"].as_str()));
        Ok(out)
    }
}
