//! Pipelines and tasks in the simulated DevLake: creation, the task state machine, reruns,
//! cancellation and the listing filters.

use super::*;

impl State {
    pub(super) fn insert_pipeline(&mut self, mut p: Pipeline) -> u64 {
        let id = self.next_pipeline_id.max(p.id);
        p.id = id;
        self.next_pipeline_id = id + 1;
        if p.blueprint_id != 0 {
            self.pipelines_by_blueprint
                .entry(p.blueprint_id)
                .or_default()
                .insert(id);
        }
        self.pipelines.insert(id, p);
        id
    }

    /// Seeds a pipeline row directly (no validation beyond known statuses).
    pub(crate) fn seed_pipeline(
        &mut self,
        seed: PipelineSeed,
        plan_cache: &mut HashMap<u64, (Arc<str>, Shared, i64)>,
    ) -> ApiResult<u64> {
        let status = status_const(&seed.status)
            .ok_or_else(|| ApiError::bad(format!("unknown status {}", seed.status)))?;
        let (name, plan, total) = if seed.blueprint_id == 0 {
            (Arc::from("pipeline"), self.default_plan.clone(), 1)
        } else {
            match plan_cache.get(&seed.blueprint_id) {
                Some(c) => c.clone(),
                None => {
                    let bp = self.blueprint(seed.blueprint_id)?;
                    let (plan, total) = match count_tasks(&bp.plan.0) {
                        0 => (self.default_plan.clone(), 1),
                        n => (bp.plan.clone(), n),
                    };
                    let entry = (Arc::<str>::from(bp.name.as_str()), plan, total);
                    plan_cache.insert(seed.blueprint_id, entry.clone());
                    entry
                }
            }
        };
        let created = seed.created_at.unwrap_or_else(|| self.now());
        let finished = FINISHED.contains(&status);
        let began = seed.began_at.or(match status {
            "TASK_CREATED" => None,
            _ => Some(created + chrono::Duration::seconds(1)),
        });
        let finished_at = seed
            .finished_at
            .or_else(|| finished.then(|| began.unwrap_or(created) + chrono::Duration::seconds(60)));
        let bp = self.blueprints.get(&seed.blueprint_id);
        let p = Pipeline {
            id: self.next_pipeline_id,
            created_at: created,
            updated_at: finished_at.or(began).unwrap_or(created),
            name: seed.name.map(Arc::from).unwrap_or(name),
            blueprint_id: seed.blueprint_id,
            plan,
            total_tasks: total,
            finished_tasks: if finished { total } else { 0 },
            began_at: began,
            finished_at,
            status,
            message: seed.message,
            error_name: seed.error_name,
            spent_seconds: match (began, finished_at) {
                (Some(b), Some(f)) => (f - b).num_seconds(),
                _ => 0,
            },
            stage: if began.is_some() { 1 } else { 0 },
            labels: if seed.labels.is_empty() {
                bp.map(|b| b.labels.clone()).unwrap_or_default()
            } else {
                seed.labels
            },
            priority: bp.map(|b| b.priority).unwrap_or(0),
            skip_on_fail: bp.is_some_and(|b| b.skip_on_fail),
            time_after: bp.and_then(|b| b.time_after),
            skip_collectors: false,
            full_sync: false,
        };
        Ok(self.insert_pipeline(p))
    }

    pub(crate) fn pipeline(&self, id: u64) -> ApiResult<&Pipeline> {
        self.pipelines
            .get(&id)
            .ok_or_else(|| ApiError::not_found("pipeline not found"))
    }

    /// Matching pipelines newest first: (count, the requested page).
    pub(crate) fn list_pipelines(
        &self,
        f: &PipelineFilter,
        page: usize,
        page_size: usize,
    ) -> (usize, Vec<&Pipeline>) {
        let matches = |p: &&Pipeline| {
            f.status.as_ref().is_none_or(|s| p.status == s.as_str())
                && (!f.pending || p.is_pending())
                && f.label.as_ref().is_none_or(|l| p.labels.contains(l))
        };
        let skip = (page.max(1) - 1) * page_size;
        let candidates: Box<dyn Iterator<Item = &Pipeline>> = match f.blueprint_id {
            Some(bp) => Box::new(
                self.pipelines_by_blueprint
                    .get(&bp)
                    .into_iter()
                    .flat_map(|ids| ids.iter().rev())
                    .map(|id| &self.pipelines[id]),
            ),
            None if f.status.is_none() && !f.pending && f.label.is_none() => {
                // Unfiltered: the count is known, so only walk to the requested page.
                let page = self
                    .pipelines
                    .values()
                    .rev()
                    .skip(skip)
                    .take(page_size)
                    .collect();
                return (self.pipelines.len(), page);
            }
            None => Box::new(self.pipelines.values().rev()),
        };
        let mut count = 0usize;
        let mut out = Vec::with_capacity(page_size.min(1000));
        for p in candidates.filter(matches) {
            if count >= skip && out.len() < page_size {
                out.push(p);
            }
            count += 1;
        }
        (count, out)
    }

    pub(super) fn ensure_tasks(&mut self, id: u64) {
        if self.tasks.contains_key(&id) {
            return;
        }
        let Some(p) = self.pipelines.get(&id) else {
            return;
        };
        let mut tasks = Vec::new();
        if let Some(stages) = p.plan.0.as_array() {
            for (row, stage) in stages.iter().enumerate() {
                for (col, t) in stage.as_array().into_iter().flatten().enumerate() {
                    tasks.push(Task {
                        id: self.next_task_id + tasks.len() as u64,
                        created_at: p.created_at,
                        updated_at: p.updated_at,
                        plugin: t
                            .get("plugin")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        subtasks: t.get("subtasks").cloned().unwrap_or(Value::Null),
                        options: t.get("options").cloned().unwrap_or(json!({})),
                        status: "TASK_CREATED",
                        message: String::new(),
                        error_name: String::new(),
                        progress: 0.0,
                        progress_detail: Value::Null,
                        failed_sub_task: String::new(),
                        pipeline_id: id,
                        pipeline_row: row as i64 + 1,
                        pipeline_col: col as i64 + 1,
                        began_at: None,
                        finished_at: None,
                        spent_seconds: 0,
                    });
                }
            }
        }
        self.next_task_id += tasks.len() as u64;
        let status = p.status;
        let (began, finished, msg) = (p.began_at, p.finished_at, p.message.clone());
        apply_task_outcome(&mut tasks, status, began, finished, &msg);
        self.tasks.insert(id, tasks);
    }

    pub(crate) fn tasks(&mut self, id: u64) -> ApiResult<&Vec<Task>> {
        self.pipeline(id)?;
        self.ensure_tasks(id);
        Ok(&self.tasks[&id])
    }

    /// `POST /pipelines/{id}/rerun`, as DevLake's `RerunPipeline`: refused while the pipeline
    /// runs or waits (`TASK_RUNNING`, `TASK_CREATED`, `TASK_RERUN`; `TASK_RESUME` is not checked),
    /// new task rows for every task whose latest attempt did not complete, and one column update
    /// of the pipeline: `status = TASK_RERUN`. `beganAt` and `finishedAt` keep the previous
    /// run's values until the runner picks it up (and `finishedAt` after that, so the pipeline is
    /// never "pending", whose query wants `finished_at IS NULL`);
    /// the update goes through gorm's `Update`, which stamps `updatedAt`.
    pub(crate) fn rerun(&mut self, id: u64) -> ApiResult<Vec<Task>> {
        let p = self.pipeline(id)?;
        match p.status {
            "TASK_RUNNING" => return Err(ApiError::bad("pipeline is running")),
            "TASK_CREATED" | "TASK_RERUN" => {
                return Err(ApiError::bad("pipeline is waiting to run"))
            }
            _ => {}
        }
        self.ensure_tasks(id);
        let t = self.now();
        let mut next_task_id = self.next_task_id;
        let tasks = self.tasks.get_mut(&id).expect("ensured");
        let mut new_tasks = Vec::new();
        for task in tasks.iter_mut().filter(|t| t.status != "TASK_COMPLETED") {
            task.id = next_task_id;
            next_task_id += 1;
            task.status = "TASK_CREATED";
            task.created_at = t;
            task.updated_at = t;
            task.message.clear();
            task.error_name.clear();
            task.failed_sub_task.clear();
            task.began_at = None;
            task.finished_at = None;
            task.spent_seconds = 0;
            task.progress = 0.0;
            new_tasks.push(task.clone());
        }
        self.next_task_id = next_task_id;
        if new_tasks.is_empty() {
            return Err(ApiError::bad("no tasks to be re-ran"));
        }
        let p = self.pipelines.get_mut(&id).expect("checked");
        p.status = "TASK_RERUN";
        p.updated_at = t;
        Ok(new_tasks)
    }

    /// `DELETE /pipelines/{id}`, as DevLake's `CancelPipeline`. A queued pipeline
    /// (`TASK_CREATED`/`TASK_RERUN`) is saved as `TASK_CANCELLED` at once, no timestamp touched
    /// but `updatedAt` (gorm `Save`): never started, it has no `beganAt`/`finishedAt`; a queued
    /// re-run keeps its previous run's. A running pipeline has its tasks cancelled and
    /// `runPipeline` then ends it as `TASK_CANCELLED` with a new `finishedAt`; the simulator
    /// collapses that into this call. A `TASK_RESUME` pipeline only has its pending tasks
    /// cancelled (`cancelPendingTasksInDB`): its row is not changed here. Finished: no-op.
    /// A running pipeline in `uncancellable` answers the same 200 and runs on: its running task
    /// never stops (a task blocked outside its context, or one `cancelRunningTasks` skips
    /// because `CancelTask` no longer tracks it).
    pub(crate) fn cancel(&mut self, id: u64) -> ApiResult<()> {
        let t = self.now();
        let p = self
            .pipelines
            .get_mut(&id)
            .ok_or_else(|| ApiError::bad("pipeline not found"))?;
        match p.status {
            "TASK_CREATED" | "TASK_RERUN" => {
                p.status = "TASK_CANCELLED";
                p.updated_at = t;
                let end = PipelineEnd {
                    pipeline_id: id,
                    blueprint_id: p.blueprint_id,
                    status: p.status.to_string(),
                    at: t,
                };
                self.ends.push(end);
                if let Some(tasks) = self.tasks.get_mut(&id) {
                    for task in tasks.iter_mut() {
                        task.status = "TASK_CANCELLED";
                    }
                }
                Ok(())
            }
            "TASK_RUNNING" if self.uncancellable.contains(&id) => Ok(()),
            "TASK_RUNNING" => self.finish(id, "TASK_CANCELLED", "", None),
            "TASK_RESUME" => {
                if let Some(tasks) = self.tasks.get_mut(&id) {
                    for task in tasks.iter_mut().filter(|t| t.status == "TASK_RESUME") {
                        task.status = "TASK_CANCELLED";
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The runner picking a queued pipeline, as DevLake's `dequeuePipeline`: only
    /// `TASK_CREATED`, `TASK_RERUN` and `TASK_RESUME` are dequeued; `status = TASK_RUNNING`,
    /// `message` cleared, `beganAt` = now at every start, a re-run's and a resumed pipeline's
    /// included. (The Go code sets `began_at` "only when it is null", but it reads the pipeline
    /// with `Select("id")`, so the field it tests is always null; v0.21 set it unconditionally.)
    /// `finishedAt` is not touched: a re-run runs with the previous run's, so while it runs its
    /// `beganAt` is later than its `finishedAt`.
    pub(crate) fn start(&mut self, id: u64) -> ApiResult<()> {
        let t = self.now();
        let p = self
            .pipelines
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("pipeline not found"))?;
        match p.status {
            "TASK_CREATED" | "TASK_RERUN" | "TASK_RESUME" => {}
            "TASK_RUNNING" => return Ok(()),
            _ => return Err(ApiError::bad("pipeline already finished")),
        }
        p.status = "TASK_RUNNING";
        p.message.clear();
        p.began_at = Some(t);
        p.updated_at = t;
        p.stage = p.stage.max(1);
        let began = p.began_at;
        if let Some(tasks) = self.tasks.get_mut(&id) {
            apply_task_outcome(tasks, "TASK_RUNNING", began, None, "");
        }
        // RunPipelineInQueue: "Notify that the pipeline has started", before runPipeline.
        self.notify_external(id);
        Ok(())
    }

    /// A restart of DevLake, as `pipelineServiceInit` → `markInterruptedPipelineAs`: every
    /// `TASK_RUNNING` pipeline (and task) becomes `TASK_RESUME` (`RESUME_PIPELINES=true`, the
    /// default) or `TASK_FAILED` (`false`) in one column update (gorm `Updates`, which stamps
    /// `updatedAt`). `finishedAt` is left as it was: null on a first run, the previous run's on
    /// a re-run. Returns the ids changed.
    pub(crate) fn restart(&mut self, resume_pipelines: bool) -> Vec<u64> {
        let status = if resume_pipelines {
            "TASK_RESUME"
        } else {
            "TASK_FAILED"
        };
        let t = self.now();
        let mut changed = Vec::new();
        for p in self
            .pipelines
            .values_mut()
            .filter(|p| p.status == "TASK_RUNNING")
        {
            p.status = status;
            p.updated_at = t;
            changed.push(p.id);
            if !resume_pipelines {
                self.ends.push(PipelineEnd {
                    pipeline_id: p.id,
                    blueprint_id: p.blueprint_id,
                    status: status.to_string(),
                    at: t,
                });
            }
        }
        for id in &changed {
            if let Some(tasks) = self.tasks.get_mut(id) {
                for task in tasks.iter_mut().filter(|t| t.status == "TASK_RUNNING") {
                    task.status = status;
                }
            }
        }
        changed
    }

    /// Finishes a pipeline with a final status (what DevLake's runner would do).
    /// Ends pipeline `id` with `status`. A failed end gets `message` and, as `errorName`, the
    /// given chain or (`None`) `message` with one `caused by:` layer.
    pub(crate) fn finish(
        &mut self,
        id: u64,
        status: &str,
        message: &str,
        error_name: Option<&str>,
    ) -> ApiResult<()> {
        let status = status_const(status)
            .filter(|s| FINISHED.contains(s))
            .ok_or_else(|| ApiError::bad(format!("not a finished status: {status}")))?;
        let t = self.now();
        let p = self
            .pipelines
            .get_mut(&id)
            .ok_or_else(|| ApiError::not_found("pipeline not found"))?;
        let began = *p.began_at.get_or_insert(t);
        p.status = status;
        p.finished_at = Some(t);
        p.updated_at = t;
        p.spent_seconds = (t - began).num_seconds();
        p.finished_tasks = p.total_tasks;
        p.stage = p
            .plan
            .0
            .as_array()
            .map(|a| a.len() as i64)
            .unwrap_or(1)
            .max(1);
        if status == "TASK_COMPLETED" {
            p.message.clear();
            p.error_name.clear();
        } else {
            p.message = message.to_string();
            p.error_name = match error_name {
                Some(chain) => chain.to_string(),
                None if message.is_empty() => String::new(),
                None => format!("{message}\n\tcaused by: subtask failed"),
            };
        }
        let msg = p.message.clone();
        let blueprint_id = p.blueprint_id;
        if let Some(tasks) = self.tasks.get_mut(&id) {
            apply_task_outcome(tasks, status, Some(began), Some(t), &msg);
        }
        self.ends.push(PipelineEnd {
            pipeline_id: id,
            blueprint_id,
            status: status.to_string(),
            at: t,
        });
        // runPipeline: the row saved with its final status, then "notify external webhook".
        self.notify_external(id);
        Ok(())
    }

    /// Ids of pipelines in a status the runner still has to end (queued, re-run, resumed or
    /// running), whatever their `finishedAt`.
    pub(crate) fn unfinished_ids(&self) -> Vec<u64> {
        self.pipelines
            .values()
            .filter(|p| !FINISHED.contains(&p.status))
            .map(|p| p.id)
            .collect()
    }

    pub(crate) fn pending_ids(&self) -> Vec<u64> {
        self.pipelines
            .values()
            .filter(|p| p.is_pending())
            .map(|p| p.id)
            .collect()
    }
}

pub(crate) fn count_tasks(plan: &Value) -> i64 {
    plan.as_array()
        .map(|stages| {
            stages
                .iter()
                .map(|s| s.as_array().map_or(0, |t| t.len() as i64))
                .sum()
        })
        .unwrap_or(0)
}

pub(super) fn apply_task_outcome(
    tasks: &mut [Task],
    status: &'static str,
    began: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    message: &str,
) {
    let n = tasks.len();
    for (i, t) in tasks.iter_mut().enumerate() {
        let last = i + 1 == n;
        let s = match status {
            "TASK_COMPLETED" => "TASK_COMPLETED",
            "TASK_FAILED" if last => "TASK_FAILED",
            "TASK_FAILED" => "TASK_COMPLETED",
            "TASK_PARTIAL" if last && n > 1 => "TASK_FAILED",
            "TASK_PARTIAL" => "TASK_COMPLETED",
            "TASK_CANCELLED" => "TASK_CANCELLED",
            "TASK_RUNNING" if i == 0 => "TASK_RUNNING",
            _ => "TASK_CREATED",
        };
        // Don't touch tasks that already completed in an earlier attempt.
        if t.status == "TASK_COMPLETED" && s != "TASK_COMPLETED" && status != "TASK_CANCELLED" {
            continue;
        }
        t.status = s;
        if s == "TASK_FAILED" {
            t.message = message.to_string();
            t.error_name = message.to_string();
            t.failed_sub_task = "collectApiData".into();
        }
        if s != "TASK_CREATED" {
            t.began_at = began;
        }
        if matches!(s, "TASK_COMPLETED" | "TASK_FAILED" | "TASK_CANCELLED") {
            t.finished_at = finished;
            t.progress = 1.0;
            if let (Some(b), Some(f)) = (began, finished) {
                t.spent_seconds = (f - b).num_seconds();
            }
        }
    }
}
