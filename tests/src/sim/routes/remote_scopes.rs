//! Remote-scope routes of the simulated DevLake: listing and searching what a connection's
//! data source offers, with DevLake's page tokens.

use super::*;

pub(super) fn decode_page_token(token: &str) -> ApiResult<(usize, Option<usize>)> {
    let bad = || ApiError::bad("invalid page token");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let page = v.get("page").and_then(Value::as_u64).ok_or_else(bad)? as usize;
    let per = v
        .get("per_page")
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    Ok((page.max(1), per.filter(|p| *p > 0)))
}

pub(super) async fn remote_scopes(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let group = q.get("groupId").cloned().unwrap_or_default();
    h.with_state(|s| {
        let (page, per_page) = match q.get("pageToken").filter(|t| !t.is_empty()) {
            Some(t) => {
                let (page, per) = decode_page_token(t)?;
                (page, per.unwrap_or(s.remote_page_size))
            }
            None => (1, s.remote_page_size),
        };
        let (children, more) = s.remote_page(&plugin, cid, &group, page, per_page)?;
        let next = if more {
            let mut token = json!({"page": page + 1, "per_page": per_page});
            if plugin == "gitlab" {
                let next_is_group = s
                    .connection(&plugin, cid)?
                    .remote
                    .get(&group)
                    .and_then(|l| l.get(page * per_page))
                    .is_some_and(|e| e.is_group);
                token["step"] = json!(if next_is_group { "group" } else { "project" });
            }
            base64::engine::general_purpose::STANDARD.encode(token.to_string())
        } else {
            String::new()
        };
        Ok(json_response(
            200,
            &json!({"children": children, "nextPageToken": next}),
        ))
    })
}

pub(super) async fn search_remote_scopes(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
    Query(q): Q,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    if matches!(plugin.as_str(), "jenkins" | "circleci") {
        return Ok(plain_not_found());
    }
    let cid = parse_id(&cid, "connectionId")?;
    let search = q
        .get("search")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad("search is required"))?;
    let (page, size) = paging(&q, 50, None)?;
    h.with_state(|s| {
        let all = s.remote_search(&plugin, cid, search)?;
        let children: Vec<Value> = all.into_iter().skip((page - 1) * size).take(size).collect();
        Ok(json_response(
            200,
            &json!({"children": children, "page": page, "pageSize": size}),
        ))
    })
}
