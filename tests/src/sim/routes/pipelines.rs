//! Pipeline routes of the simulated DevLake: list, create, get, cancel, rerun and tasks.

use super::*;

#[derive(Serialize)]
pub(super) struct PipelinesPage<'a> {
    count: usize,
    pipelines: Vec<&'a Pipeline>,
}

pub(super) fn pipelines_page(
    h: &SimHandle,
    q: &HashMap<String, String>,
    blueprint: Option<u64>,
) -> ApiResult<R> {
    let (page, size) = paging(q, 50, None)?;
    let blueprint_id = match blueprint {
        Some(b) => Some(b),
        None => q_usize(q, "blueprint_id")?
            .filter(|b| *b > 0)
            .map(|b| b as u64),
    };
    let filter = PipelineFilter {
        status: q.get("status").filter(|s| !s.is_empty()).cloned(),
        pending: q_usize(q, "pending")?.is_some_and(|p| p > 0),
        blueprint_id,
        label: q.get("label").filter(|l| !l.is_empty()).cloned(),
    };
    // Serialise under the lock straight from the rows: no clone of the table per request.
    let body = h.with_state(|s| {
        let (count, pipelines) = s.list_pipelines(&filter, page, size);
        serde_json::to_vec(&PipelinesPage { count, pipelines })
    });
    Ok(bytes_response(200, body.unwrap_or_default()))
}

pub(super) async fn list_pipelines(AxState(h): AxState<SimHandle>, Query(q): Q) -> ApiResult<R> {
    pipelines_page(&h, &q, None)
}

pub(super) async fn create_pipeline(AxState(h): AxState<SimHandle>, body: Bytes) -> ApiResult<R> {
    let body = parse_body(&body)?;
    let (pid, resp) = h.with_state(|s| -> ApiResult<_> {
        let pid = s.create_adhoc_pipeline(body)?;
        Ok((pid, json_response(201, s.pipeline(pid)?)))
    })?;
    h.schedule_auto_complete(pid);
    Ok(resp)
}

pub(super) async fn get_pipeline(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    h.with_state(|s| Ok(json_response(200, s.pipeline(id)?)))
}

pub(super) async fn cancel_pipeline(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    h.with_state(|s| s.cancel(id))?;
    Ok(success("success"))
}

pub(super) async fn rerun_pipeline(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    let tasks = h.with_state(|s| s.rerun(id))?;
    h.schedule_auto_complete(id);
    Ok(json_response(200, &tasks))
}

pub(super) async fn pipeline_tasks(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
) -> ApiResult<R> {
    let id = parse_id(&id, "pipelineId")?;
    h.with_state(|s| {
        let tasks = s.tasks(id)?;
        Ok(json_response(
            200,
            &json!({"tasks": tasks, "count": tasks.len()}),
        ))
    })
}
