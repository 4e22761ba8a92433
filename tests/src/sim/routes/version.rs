//! Health and meta routes of the simulated DevLake: `/ready`, `/health`, `/version` and the
//! migration confirmation (the counterpart of the client's `version.rs`).

use super::*;

pub(super) async fn ready(AxState(h): AxState<SimHandle>) -> R {
    match lock(&h.inner.faults).faults.migration {
        MigrationMode::None => success("ready"),
        MigrationMode::Pending => error_response(
            503,
            "service is not ready: waiting for migration confirmation",
            Value::Null,
        ),
        MigrationMode::Running => {
            error_response(503, "service is not ready: migrating", Value::Null)
        }
    }
}

pub(super) async fn health(AxState(h): AxState<SimHandle>) -> R {
    match lock(&h.inner.faults).faults.migration {
        MigrationMode::None => success("good"),
        _ => success("maybe"),
    }
}

pub(super) async fn version(AxState(h): AxState<SimHandle>) -> R {
    let v = h.with_state(|s| s.version.clone());
    json_response(200, &json!({"version": v}))
}

pub(super) async fn proceed_db_migration(AxState(h): AxState<SimHandle>) -> R {
    let mut f = lock(&h.inner.faults);
    match f.faults.migration {
        // DevLake panics here; gin's recovery answers a bare 500.
        MigrationMode::Running => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::empty())
            .expect("valid response"),
        _ => {
            f.faults.migration = MigrationMode::None;
            success("success")
        }
    }
}
