//! Projects in the simulated DevLake: creation (with the blueprint DevLake makes alongside),
//! listing, renaming, patching and deletion.

use super::*;

impl State {
    pub(crate) fn blueprint_of_project(&self, project: &str) -> Option<&Blueprint> {
        self.blueprint_by_project
            .get(project)
            .and_then(|id| self.blueprints.get(id))
    }

    /// Keeps the project → blueprint index in step with a blueprint's `projectName`.
    pub(super) fn reindex_blueprint(&mut self, id: u64, old_project: &str, new_project: &str) {
        if old_project == new_project {
            return;
        }
        if self.blueprint_by_project.get(old_project) == Some(&id) {
            self.blueprint_by_project.remove(old_project);
        }
        if !new_project.is_empty() {
            self.blueprint_by_project
                .entry(new_project.to_string())
                .or_insert(id);
        }
    }

    pub(crate) fn project_json(&self, p: &Project, with_last_pipeline: bool) -> Value {
        let bp = self.blueprint_of_project(&p.name);
        let mut v = json!({
            "name": p.name,
            "description": p.description,
            "createdAt": crate::sim::time::go_time(&p.created_at),
            "updatedAt": crate::sim::time::go_time(&p.updated_at),
            "_raw_data_params": "",
            "_raw_data_table": "",
            "_raw_data_id": 0,
            "_raw_data_remark": "",
            "metrics": p.metrics,
            "blueprint": bp.map(|b| serde_json::to_value(b).unwrap_or(Value::Null)),
        });
        if with_last_pipeline {
            if let Some(last) = bp.and_then(|b| self.last_pipeline_of(b.id)) {
                v["lastPipeline"] = serde_json::to_value(last).unwrap_or(Value::Null);
            }
        }
        v
    }

    pub(crate) fn last_pipeline_of(&self, blueprint_id: u64) -> Option<&Pipeline> {
        let id = self.pipelines_by_blueprint.get(&blueprint_id)?.last()?;
        self.pipelines.get(id)
    }

    pub(crate) fn project(&self, name: &str) -> ApiResult<&Project> {
        self.projects
            .get(name)
            .ok_or_else(|| ApiError::not_found(format!("could not find project [{name}] in DB")))
    }

    /// `POST /projects` — creates the project and its default blueprint.
    pub(crate) fn create_project(&mut self, body: Value, at: DateTime<Utc>) -> ApiResult<String> {
        let Value::Object(body) = body else {
            return Err(ApiError::bad("bad request body format"));
        };
        let name = match body.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(ApiError::bad(
                    "data verification failed: Key: 'ApiInputProject.Name' Error:Field validation for 'Name' failed on the 'required' tag",
                ))
            }
            Some(_) => return Err(ApiError::bad("bad request body format")),
        };
        if name.chars().count() > 100 {
            return Err(ApiError::bad("Project name is too long."));
        }
        if self.projects.contains_key(&name) {
            return Err(ApiError::bad(format!(
                "A project with name [{name}] already exists"
            )));
        }
        let description = body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let metrics = match body.get("metrics") {
            Some(Value::Array(a)) if !a.is_empty() => Value::Array(a.clone()),
            _ => Value::Null,
        };
        let seq = self.next_project_seq;
        self.next_project_seq += 1;
        self.projects.insert(
            name.clone(),
            Project {
                name: name.clone(),
                description,
                created_at: at,
                updated_at: at,
                metrics,
                seq,
            },
        );
        let id = self.next_blueprint_id;
        self.next_blueprint_id += 1;
        let bp = match body.get("blueprint") {
            // Inserted as-is: no validation, projectName not filled, connections not persisted
            // (apache/devlake#7650).
            Some(Value::Object(given)) => {
                let mut bp = self.blank_blueprint(id, at, String::new());
                let mut given = given.clone();
                given.retain(|k, _| {
                    !k.eq_ignore_ascii_case("connections") && !k.eq_ignore_ascii_case("id")
                });
                apply_blueprint_patch(&mut bp, &given, true)?;
                bp
            }
            _ => {
                let mut bp = self.blank_blueprint(id, at, name.clone());
                bp.name = format!("{name}-Blueprint");
                bp.time_after = Some(six_months_before_midnight(at));
                bp
            }
        };
        let project = bp.project_name.clone();
        self.blueprints.insert(id, bp);
        self.reindex_blueprint(id, "", &project);
        Ok(name)
    }

    pub(super) fn blank_blueprint(&self, id: u64, at: DateTime<Utc>, project: String) -> Blueprint {
        Blueprint {
            id,
            created_at: at,
            updated_at: at,
            name: String::new(),
            project_name: project,
            mode: "NORMAL".into(),
            plan: Shared(Arc::new(json!([]))),
            enable: true,
            cron_config: "0 0 * * *".into(),
            is_manual: false,
            before_plan: Value::Null,
            after_plan: Value::Null,
            labels: Vec::new(),
            connections: Vec::new(),
            priority: 0,
            skip_on_fail: false,
            time_after: None,
            skip_collectors: false,
            full_sync: false,
        }
    }

    pub(crate) fn patch_project(&mut self, name: &str, body: Value) -> ApiResult<String> {
        let Value::Object(body) = body else {
            return Err(ApiError::bad("bad request body format"));
        };
        let mut p = self.project(name)?.clone();
        let new_name = match body.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() && n != name => {
                if n.chars().count() > 100 {
                    return Err(ApiError::bad("Project name is too long."));
                }
                if self.projects.contains_key(n) {
                    return Err(ApiError::bad(format!(
                        "A project with name [{n}] already exists"
                    )));
                }
                Some(n.to_string())
            }
            _ => None,
        };
        if let Some(d) = body.get("description").and_then(Value::as_str) {
            p.description = d.to_string();
        }
        if let Some(Value::Array(m)) = body.get("metrics") {
            if !m.is_empty() {
                p.metrics = Value::Array(m.clone());
            }
        }
        p.updated_at = self.now();
        if let Some(n) = new_name {
            // DevLake's `PatchProject` moves `project_name` of the blueprint (and the metric
            // settings, mappings…) to the new name in one column update each, which stamps
            // `updatedAt`; the blueprint's own `name` ("<old>-Blueprint") is left as it was.
            let t = self.now();
            self.projects.remove(name);
            if let Some(id) = self.blueprint_by_project.remove(name) {
                self.blueprint_by_project.insert(n.clone(), id);
            }
            for bp in self
                .blueprints
                .values_mut()
                .filter(|b| b.project_name == name)
            {
                bp.project_name = n.clone();
                bp.updated_at = t;
            }
            p.name = n;
        }
        let out = p.name.clone();
        self.projects.insert(out.clone(), p);
        Ok(out)
    }

    pub(crate) fn delete_project(&mut self, name: &str) -> ApiResult<()> {
        self.project(name)?;
        if let Some(bp) = self.blueprint_of_project(name) {
            let bp_id = bp.id;
            if self.has_unfinished_first_page(bp_id) {
                return Err(ApiError::new(500, "There are unfinished pipelines in the current project. It cannot be deleted at this time."));
            }
            self.blueprints.remove(&bp_id);
            self.blueprint_by_project.remove(name);
        }
        self.projects.remove(name);
        Ok(())
    }

    pub(crate) fn list_projects(&self, keyword: Option<&str>) -> Vec<&Project> {
        let kw = keyword.map(str::to_lowercase).filter(|k| !k.is_empty());
        let mut v: Vec<&Project> = self
            .projects
            .values()
            .filter(|p| {
                kw.as_ref()
                    .is_none_or(|k| p.name.to_lowercase().contains(k))
            })
            .collect();
        v.sort_by_key(|p| std::cmp::Reverse((p.created_at, p.seq)));
        v
    }
}
