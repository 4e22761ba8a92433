//! Project routes of the simulated DevLake: list, create, get, check, patch and delete.

use super::*;

pub(super) async fn list_projects(AxState(h): AxState<SimHandle>, Query(q): Q) -> ApiResult<R> {
    let (page, size) = paging(&q, 50, None)?;
    let keyword = q.get("keyword").cloned();
    h.with_state(|s| {
        let all = s.list_projects(keyword.as_deref());
        let items: Vec<Value> = all
            .iter()
            .skip((page - 1) * size)
            .take(size)
            .map(|p| s.project_json(p, true))
            .collect();
        Ok(json_response(
            200,
            &json!({"count": all.len(), "projects": items}),
        ))
    })
}

pub(super) async fn create_project(AxState(h): AxState<SimHandle>, body: Bytes) -> ApiResult<R> {
    let body = parse_body(&body)?;
    h.with_state(|s| {
        let name = s.create_project(body, s.now())?;
        Ok(json_response(
            201,
            &s.project_json(s.project(&name)?, false),
        ))
    })
}

pub(super) async fn get_project(
    AxState(h): AxState<SimHandle>,
    Path(name): Path<String>,
) -> ApiResult<R> {
    h.with_state(|s| {
        Ok(json_response(
            200,
            &s.project_json(s.project(&name)?, false),
        ))
    })
}

pub(super) async fn check_project(
    AxState(h): AxState<SimHandle>,
    Path(name): Path<String>,
) -> ApiResult<R> {
    let exist = h.with_state(|s| s.projects.contains_key(&name));
    Ok(json_response(200, &json!({"exist": exist})))
}

pub(super) async fn patch_project(
    AxState(h): AxState<SimHandle>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<R> {
    let body = parse_body(&body)?;
    h.with_state(|s| {
        let name = s.patch_project(&name, body)?;
        // DevLake answers PATCH /projects/{name} with 201 (sic).
        Ok(json_response(
            201,
            &s.project_json(s.project(&name)?, false),
        ))
    })
}

pub(super) async fn delete_project(
    AxState(h): AxState<SimHandle>,
    Path(name): Path<String>,
) -> ApiResult<R> {
    h.with_state(|s| s.delete_project(&name))?;
    Ok(success("success"))
}
