//! Blueprints in the simulated DevLake: patching, validation, plan generation and triggering,
//! plus the PATCH-body rules (case-insensitive keys, weak typing) DevLake applies.

use super::*;

impl State {
    pub(crate) fn blueprint(&self, id: u64) -> ApiResult<&Blueprint> {
        self.blueprints
            .get(&id)
            .ok_or_else(|| ApiError::not_found("blueprint not found"))
    }

    /// `PATCH /blueprints/{id}`: keys present change (case-insensitive), arrays replaced
    /// wholesale, then the whole blueprint is re-validated and its plan regenerated.
    pub(crate) fn patch_blueprint(&mut self, id: u64, patch: Value) -> ApiResult<&Blueprint> {
        let Value::Object(patch) = patch else {
            return Err(ApiError::bad("bad request body format"));
        };
        let mut bp = self.blueprint(id)?.clone();
        apply_blueprint_patch(&mut bp, &patch, false)?;
        self.validate_and_plan(&mut bp)?;
        bp.updated_at = self.now();
        let old_project = self.blueprints[&id].project_name.clone();
        let new_project = bp.project_name.clone();
        self.blueprints.insert(id, bp);
        self.reindex_blueprint(id, &old_project, &new_project);
        Ok(&self.blueprints[&id])
    }

    /// `POST /blueprints` — validated like PATCH, plan generated for NORMAL mode.
    pub(crate) fn create_blueprint(&mut self, body: Value) -> ApiResult<u64> {
        let Value::Object(body) = body else {
            return Err(ApiError::bad("bad request body format"));
        };
        let id = self.next_blueprint_id;
        let mut bp = self.blank_blueprint(id, self.now(), String::new());
        bp.mode = String::new();
        apply_blueprint_patch(&mut bp, &body, true)?;
        if bp.mode.is_empty() {
            return Err(ApiError::bad("mode is required"));
        }
        self.validate_and_plan(&mut bp)?;
        self.next_blueprint_id += 1;
        let project = bp.project_name.clone();
        self.blueprints.insert(id, bp);
        self.reindex_blueprint(id, "", &project);
        Ok(id)
    }

    /// `DELETE /blueprints/{id}` — refused while a pipeline of it is unfinished.
    pub(crate) fn delete_blueprint(&mut self, id: u64) -> ApiResult<()> {
        let project = self.blueprint(id)?.project_name.clone();
        if self.has_pending(id) {
            return Err(ApiError::new(500, "There are unfinished pipelines in the current project. It cannot be deleted at this time."));
        }
        self.blueprints.remove(&id);
        self.reindex_blueprint(id, &project, "");
        Ok(())
    }

    /// `POST /pipelines` — an ad-hoc pipeline (blueprintId 0) from a caller-supplied plan.
    pub(crate) fn create_adhoc_pipeline(&mut self, body: Value) -> ApiResult<u64> {
        let bad = || ApiError::bad("bad request body format");
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let plan = body.get("plan").cloned().unwrap_or(Value::Null);
        let labels = match body.get("labels") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|l| l.as_str().map(str::to_string).ok_or_else(bad))
                .collect::<ApiResult<_>>()?,
            Some(_) => return Err(bad()),
        };
        let total = count_tasks(&plan);
        if total == 0 {
            return Err(ApiError::bad("no task to run"));
        }
        let t = self.now();
        let p = Pipeline {
            id: self.next_pipeline_id,
            created_at: t,
            updated_at: t,
            name: Arc::from(name.as_str()),
            blueprint_id: 0,
            plan: Shared(Arc::new(plan)),
            total_tasks: total,
            finished_tasks: 0,
            began_at: None,
            finished_at: None,
            status: "TASK_CREATED",
            message: String::new(),
            error_name: String::new(),
            spent_seconds: 0,
            stage: 0,
            labels,
            priority: body.get("priority").and_then(Value::as_i64).unwrap_or(0),
            skip_on_fail: false,
            time_after: None,
            skip_collectors: false,
            full_sync: false,
        };
        let id = self.insert_pipeline(p);
        // CreateDbPipeline: "Notify that the pipeline has been created" (a goroutine).
        self.notify_external(id);
        Ok(id)
    }

    pub(super) fn validate_and_plan(&self, bp: &mut Blueprint) -> ApiResult<()> {
        let invalid = |m: String| ApiError::bad(m);
        if bp.name.is_empty() {
            return Err(invalid("name is required".into()));
        }
        if !bp.project_name.is_empty() {
            if !self.projects.contains_key(&bp.project_name) {
                return Err(invalid(format!(
                    "could not find project [{}] in DB",
                    bp.project_name
                )));
            }
            if self
                .blueprint_by_project
                .get(&bp.project_name)
                .is_some_and(|&other| other != bp.id)
            {
                return Err(invalid(format!(
                    "Each project can only be associated with one blueprint, project [{}] already has one",
                    bp.project_name
                )));
            }
        }
        if bp.cron_config.eq_ignore_ascii_case("manual") {
            bp.is_manual = true;
        }
        if !bp.is_manual {
            crate::sim::cron::validate(&bp.cron_config)
                .map_err(|e| invalid(format!("invalid cronConfig: {e}")))?;
        }
        for c in &bp.connections {
            let conn = self
                .connections
                .get(&(c.plugin_name.clone(), c.connection_id))
                .ok_or_else(|| {
                    invalid(format!(
                        "connection {} of plugin {} not found",
                        c.connection_id, c.plugin_name
                    ))
                })?;
            if c.scopes.is_empty() && !matches!(c.plugin_name.as_str(), "jenkins" | "webhook") {
                return Err(invalid(format!(
                    "no scope is selected for the connection {} of plugin {}",
                    c.connection_id, c.plugin_name
                )));
            }
            for s in &c.scopes {
                if conn.scopes.get(&s.scope_id).is_none() {
                    return Err(invalid(format!(
                        "failed to find scope {} of connection {} of plugin {}: record not found",
                        s.scope_id, c.connection_id, c.plugin_name
                    )));
                }
            }
        }
        match bp.mode.as_str() {
            "NORMAL" => bp.plan = Shared(Arc::new(self.make_plan(bp))),
            "ADVANCED" => {
                if !bp.plan.0.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|s| s.as_array().is_some_and(|s| !s.is_empty()))
                }) {
                    return Err(invalid("invalid plan".into()));
                }
            }
            m => return Err(invalid(format!("invalid mode: {m}"))),
        }
        Ok(())
    }

    /// A small NORMAL-mode plan: one collection task per scope, then dora if the project has it.
    pub(super) fn make_plan(&self, bp: &Blueprint) -> Value {
        let mut collect = Vec::new();
        for c in &bp.connections {
            for s in &c.scopes {
                let mut options = Map::new();
                options.insert("connectionId".into(), json!(c.connection_id));
                let field = plugins::id_field(&c.plugin_name);
                let id_val = if plugins::id_is_int(&c.plugin_name) {
                    s.scope_id
                        .parse::<u64>()
                        .map(Value::from)
                        .unwrap_or(json!(s.scope_id))
                } else {
                    json!(s.scope_id)
                };
                options.insert(field.into(), id_val);
                collect
                    .push(json!({"plugin": c.plugin_name, "subtasks": null, "options": options}));
            }
        }
        if collect.is_empty() {
            return json!([]);
        }
        let mut stages = Vec::new();
        if !bp.project_name.is_empty() {
            stages.push(json!([{"plugin": "org", "subtasks": ["setProjectMapping"], "options": {"projectName": bp.project_name}}]));
        }
        stages.push(Value::Array(collect));
        let dora = self.projects.get(&bp.project_name).is_some_and(|p| {
            p.metrics.as_array().is_some_and(|m| {
                m.iter().any(|x| {
                    x.get("pluginName").and_then(Value::as_str) == Some("dora")
                        && x.get("enable").and_then(Value::as_bool) != Some(false)
                })
            })
        });
        if dora {
            stages.push(json!([{"plugin": "dora", "subtasks": null, "options": {"projectName": bp.project_name}}]));
        }
        Value::Array(stages)
    }

    pub(crate) fn list_blueprints(&self, f: &BlueprintFilter) -> ApiResult<Vec<&Blueprint>> {
        let kind = match (&f.is_manual, f.kind.as_deref().map(str::to_uppercase)) {
            (None, Some(k)) if k != "ALL" && !k.is_empty() => {
                if !matches!(
                    k.as_str(),
                    "MANUAL" | "DAILY" | "WEEKLY" | "MONTHLY" | "CUSTOM"
                ) {
                    return Err(ApiError::bad(format!("invalid type: {k}")));
                }
                Some(k)
            }
            _ => None,
        };
        Ok(self
            .blueprints
            .values()
            .rev()
            .filter(|b| f.enable.is_none_or(|e| b.enable == e))
            .filter(|b| f.is_manual.is_none_or(|m| b.is_manual == m))
            .filter(|b| f.label.as_ref().is_none_or(|l| b.labels.contains(l)))
            .filter(|b| match kind.as_deref() {
                None => true,
                Some("MANUAL") => b.is_manual,
                Some("DAILY") => !b.is_manual && b.cron_config == "0 0 * * *",
                Some("WEEKLY") => !b.is_manual && b.cron_config == "0 0 * * 1",
                Some("MONTHLY") => !b.is_manual && b.cron_config == "0 0 1 * *",
                Some(_) => {
                    !b.is_manual
                        && !["0 0 * * *", "0 0 * * 1", "0 0 1 * *"]
                            .contains(&b.cron_config.as_str())
                }
            })
            .collect())
    }

    /// DevLake's `thereAreUnfinishedPipelinesUnderBlueprint` (guards project deletion): any of the
    /// blueprint's first page of pipelines (50, newest first) not in a finished status, whatever
    /// its `finishedAt` (a re-run or resumed pipeline counts).
    pub(crate) fn has_unfinished_first_page(&self, blueprint_id: u64) -> bool {
        self.pipelines_by_blueprint
            .get(&blueprint_id)
            .is_some_and(|ids| {
                ids.iter()
                    .rev()
                    .take(50)
                    .any(|id| !FINISHED.contains(&self.pipelines[id].status))
            })
    }

    pub(crate) fn has_pending(&self, blueprint_id: u64) -> bool {
        self.pipelines_by_blueprint
            .get(&blueprint_id)
            .is_some_and(|ids| ids.iter().rev().any(|id| self.pipelines[id].is_pending()))
    }

    /// `POST /blueprints/{id}/trigger`.
    pub(crate) fn trigger(
        &mut self,
        id: u64,
        skip_collectors: bool,
        full_sync: bool,
    ) -> ApiResult<u64> {
        let bp = self.blueprint(id)?;
        if !bp.enable {
            return Err(ApiError::bad("blueprint is not enabled"));
        }
        if self.has_pending(id) {
            return Err(ApiError::bad(
                "there are pending pipelines of current blueprint already",
            ));
        }
        let total = count_tasks(&bp.plan.0);
        if total == 0 {
            return Err(ApiError::bad("no task to run"));
        }
        let t = self.now();
        let p = Pipeline {
            id: self.next_pipeline_id,
            created_at: t,
            updated_at: t,
            name: Arc::from(bp.name.as_str()),
            blueprint_id: id,
            plan: bp.plan.clone(),
            total_tasks: total,
            finished_tasks: 0,
            began_at: None,
            finished_at: None,
            status: "TASK_CREATED",
            message: String::new(),
            error_name: String::new(),
            spent_seconds: 0,
            stage: 0,
            labels: bp.labels.clone(),
            priority: bp.priority,
            skip_on_fail: bp.skip_on_fail,
            time_after: bp.time_after,
            skip_collectors,
            full_sync,
        };
        let id = self.insert_pipeline(p);
        // CreateDbPipeline: "Notify that the pipeline has been created" (a goroutine).
        self.notify_external(id);
        Ok(id)
    }
}

/// Midnight six months before `at` (the default `timeAfter` of a new project's blueprint).
pub(crate) fn six_months_before_midnight(at: DateTime<Utc>) -> DateTime<Utc> {
    let d = at
        .date_naive()
        .checked_sub_months(Months::new(6))
        .unwrap_or(at.date_naive());
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
}

/// Applies a blueprint PATCH body (mapstructure: case-insensitive keys, weak typing).
pub(crate) fn apply_blueprint_patch(
    bp: &mut Blueprint,
    patch: &Map<String, Value>,
    allow_mode: bool,
) -> ApiResult<()> {
    let bad = |k: &str| ApiError::bad(format!("bad request body format: field {k}"));
    let as_bool = |k: &str, v: &Value| match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => Ok(n.as_i64() != Some(0)),
        Value::String(s) => s.parse::<bool>().map_err(|_| bad(k)),
        _ => Err(bad(k)),
    };
    let as_str = |k: &str, v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(bad(k)),
    };
    for (key, v) in patch {
        match key.to_lowercase().as_str() {
            "name" => bp.name = as_str(key, v)?,
            "projectname" => bp.project_name = as_str(key, v)?,
            "mode" => {
                let m = as_str(key, v)?;
                if allow_mode {
                    bp.mode = m;
                } else if m != bp.mode {
                    return Err(ApiError::bad("mode is not updatable"));
                }
            }
            "plan" => bp.plan = Shared(Arc::new(v.clone())),
            "enable" => bp.enable = as_bool(key, v)?,
            "cronconfig" => bp.cron_config = as_str(key, v)?,
            "ismanual" => bp.is_manual = as_bool(key, v)?,
            "beforeplan" => bp.before_plan = v.clone(),
            "afterplan" => bp.after_plan = v.clone(),
            "labels" => {
                bp.labels = match v {
                    Value::Null => Vec::new(),
                    Value::Array(a) => a
                        .iter()
                        .map(|l| l.as_str().map(str::to_string).ok_or_else(|| bad(key)))
                        .collect::<ApiResult<_>>()?,
                    _ => return Err(bad(key)),
                }
            }
            "connections" => bp.connections = parse_connections(v)?,
            "priority" => bp.priority = v.as_i64().ok_or_else(|| bad(key))?,
            "skiponfail" => bp.skip_on_fail = as_bool(key, v)?,
            "skipcollectors" => bp.skip_collectors = as_bool(key, v)?,
            "fullsync" => bp.full_sync = as_bool(key, v)?,
            "timeafter" => {
                bp.time_after = match v {
                    Value::Null => None,
                    Value::String(s) if s.is_empty() => None,
                    Value::String(s) => {
                        let t = parse_time(s).ok_or_else(|| bad(key))?;
                        // A zero time becomes null.
                        (t.timestamp()
                            > Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap().timestamp())
                        .then_some(t)
                    }
                    _ => return Err(bad(key)),
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn get_ci<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    m.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

pub(super) fn parse_connections(v: &Value) -> ApiResult<Vec<BlueprintConnection>> {
    let bad = || ApiError::bad("bad request body format: connections");
    let arr = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(a) => a,
        _ => return Err(bad()),
    };
    arr.iter()
        .map(|c| {
            let c = c.as_object().ok_or_else(bad)?;
            let plugin = get_ci(c, "pluginName")
                .and_then(Value::as_str)
                .ok_or_else(bad)?
                .to_string();
            let connection_id = match get_ci(c, "connectionId") {
                Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
                Some(Value::String(s)) => s.parse().map_err(|_| bad())?,
                _ => return Err(bad()),
            };
            let scopes = match get_ci(c, "scopes") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|s| {
                        let s = s.as_object().ok_or_else(bad)?;
                        let id = match get_ci(s, "scopeId") {
                            Some(Value::String(s)) => s.clone(),
                            Some(Value::Number(n)) => n.to_string(),
                            _ => return Err(bad()),
                        };
                        Ok(BlueprintScope { scope_id: id })
                    })
                    .collect::<ApiResult<_>>()?,
                _ => return Err(bad()),
            };
            Ok(BlueprintConnection {
                plugin_name: plugin,
                connection_id,
                scopes,
            })
        })
        .collect()
}

/// Helper used by fixtures: create a project and wire its blueprint in one step.
pub(crate) fn wire_blueprint(
    state: &mut State,
    project: &str,
    patch: Map<String, Value>,
) -> ApiResult<u64> {
    let id = state
        .blueprint_of_project(project)
        .map(|b| b.id)
        .ok_or_else(|| ApiError::not_found("blueprint not found"))?;
    if !patch.is_empty() {
        state.patch_blueprint(id, Value::Object(patch))?;
    }
    Ok(id)
}
