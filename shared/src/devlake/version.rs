//! Health and version: `GET /ping`, `GET /version`, and what the version decides (the shape of
//! a new project's `pluginOption`, which changed between v0.x and v1.x).

use reqwest::Method;
use serde_json::Value;

use super::client::{DevLakeClient, Result};
use super::http::Accept;
use super::models::*;

/// A major.minor.patch read from `GET /version` (`v0.21.0@abc`, `v1.0.3-beta12@…`).
/// `None` for `dev` and anything else unstamped.
pub fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let tag = version.split('@').next()?.trim();
    let tag = tag.strip_prefix('v').unwrap_or(tag);
    let core = tag.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

impl Version {
    /// `(major, minor, patch)`; `None` for `dev` or unparsable tags (treat as latest).
    pub fn semver(&self) -> Option<(u64, u64, u64)> {
        parse_version(&self.version)
    }

    /// v0.20/v0.21 store `metrics[].pluginOption` as a JSON string; v1.0.0+ as an object.
    pub fn plugin_option_is_string(&self) -> bool {
        matches!(self.semver(), Some((0, _, _)))
    }
}

impl ProjectMetric {
    /// The `dora` metric with an empty option in the shape this DevLake version accepts:
    /// `{}` for v1.x (and `dev`), the string `"{}"` for v0.x.
    pub fn dora(version: &Version) -> ProjectMetric {
        let plugin_option = if version.plugin_option_is_string() {
            Value::String("{}".to_string())
        } else {
            Value::Object(Default::default())
        };
        ProjectMetric {
            plugin_name: "dora".to_string(),
            plugin_option,
            enable: true,
        }
    }
}

impl DevLakeClient {
    pub async fn ping(&self) -> Result<()> {
        self.execute(Method::GET, "/ping", &[], None, Accept::Success)
            .await
            .map(|_| ())
    }

    pub async fn version(&self) -> Result<Version> {
        self.get_json("/version", &[]).await
    }

    /// The `metrics` of a new project for this DevLake version (DORA on, `pluginOption` shaped
    /// per version, see [`ProjectMetric::dora`]).
    pub fn project_input_metrics(version: &Version) -> Vec<ProjectMetric> {
        vec![ProjectMetric::dora(version)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_pick_the_plugin_option_shape() {
        let v = |s: &str| Version { version: s.into() };
        assert_eq!(parse_version("v0.21.0@abc"), Some((0, 21, 0)));
        assert_eq!(parse_version("v1.0.3-beta12@abc1234"), Some((1, 0, 3)));
        assert_eq!(parse_version("dev"), None);
        assert!(v("v0.20.0@x").plugin_option_is_string());
        assert!(!v("v1.0.0@x").plugin_option_is_string());
        assert!(!v("dev").plugin_option_is_string());
        assert_eq!(
            serde_json::to_value(ProjectMetric::dora(&v("v0.21.0@abc"))).unwrap(),
            serde_json::json!({"pluginName":"dora","pluginOption":"{}","enable":true})
        );
        assert_eq!(
            serde_json::to_value(DevLakeClient::project_input_metrics(&v("dev"))).unwrap(),
            serde_json::json!([{"pluginName":"dora","pluginOption":{},"enable":true}])
        );
    }
}
