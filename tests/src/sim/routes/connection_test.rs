//! `POST /plugins/{plugin}/connections/{id}/test` of the simulated DevLake (the counterpart of
//! the client's `connection_test.rs`): each plugin's `TestExistingConnection`, answered from
//! `state/connection_test.rs`.

use super::*;

pub(super) async fn test_connection(
    AxState(h): AxState<SimHandle>,
    Path((plugin, cid)): Path<(String, String)>,
) -> ApiResult<R> {
    plugin_guard!(h, plugin);
    let cid = parse_id(&cid, "connectionId")?;
    let (status, body) = h.with_state(|s| s.test_connection(&plugin, cid))?;
    Ok(json_response(status, &body))
}
