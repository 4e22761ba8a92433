//! Blueprint routes of the simulated DevLake: list, get, patch, create, delete, trigger and
//! a blueprint's pipelines.

use super::*;

pub(super) async fn list_blueprints(AxState(h): AxState<SimHandle>, Query(q): Q) -> ApiResult<R> {
    let (page, size) = paging(&q, 50, None)?;
    let filter = BlueprintFilter {
        enable: q_bool(&q, "enable")?,
        is_manual: q_bool(&q, "isManual")?,
        label: q.get("label").filter(|l| !l.is_empty()).cloned(),
        kind: q.get("type").cloned(),
    };
    h.with_state(|s| {
        let all = s.list_blueprints(&filter)?;
        let page: Vec<_> = all.iter().skip((page - 1) * size).take(size).collect();
        Ok(json_response(
            200,
            &json!({"count": all.len(), "blueprints": page}),
        ))
    })
}

pub(super) async fn get_blueprint(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    h.with_state(|s| Ok(json_response(200, s.blueprint(id)?)))
}

pub(super) async fn patch_blueprint(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    let body = parse_body(&body)?;
    h.with_state(|s| Ok(json_response(200, s.patch_blueprint(id, body)?)))
}

pub(super) async fn create_blueprint(AxState(h): AxState<SimHandle>, body: Bytes) -> ApiResult<R> {
    let body = parse_body(&body)?;
    h.with_state(|s| {
        let id = s.create_blueprint(body)?;
        Ok(json_response(201, s.blueprint(id)?))
    })
}

pub(super) async fn delete_blueprint(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    h.with_state(|s| s.delete_blueprint(id))?;
    Ok(success("success"))
}

pub(super) async fn trigger_blueprint(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    let opts = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_body(&body)?
    };
    let flag = |k: &str| opts.get(k).and_then(Value::as_bool).unwrap_or(false);
    let (skip, full) = (flag("skipCollectors"), flag("fullSync"));
    let (pid, resp) = h.with_state(|s| -> ApiResult<_> {
        let pid = s.trigger(id, skip, full)?;
        Ok((pid, json_response(200, s.pipeline(pid)?)))
    })?;
    h.schedule_auto_complete(pid);
    Ok(resp)
}

pub(super) async fn blueprint_pipelines(
    AxState(h): AxState<SimHandle>,
    Path(id): Path<String>,
    Query(q): Q,
) -> ApiResult<R> {
    let id = parse_id(&id, "blueprintID")?;
    pipelines_page(&h, &q, Some(id))
}
