//! The tool's scope config: one per connection, created once, referenced by every managed scope
//! that has none (a scope with another config keeps it).

use serde_json::{Map, Value};

use crate::devlake::models::{ScopeConfig, ScopeListItem};

use super::config::AutomationConfig;

/// Plugins whose data feeds DORA's deployments: source hosts with CI and pure CI servers.
fn has_dora_patterns(plugin: &str) -> bool {
    matches!(
        plugin,
        "github" | "gitlab" | "bitbucket" | "azuredevops_go" | "jenkins" | "circleci" | "bamboo"
    )
}

/// The domain entities collected per plugin (`CODE`, `TICKET`, `CODEREVIEW`, `CROSS`, `CICD`).
fn entities(plugin: &str) -> &'static [&'static str] {
    match plugin {
        "github" | "gitlab" | "bitbucket" => &["CODE", "TICKET", "CODEREVIEW", "CROSS", "CICD"],
        // Bitbucket Server's subtasks only produce these domains (no issues, no pipelines).
        "bitbucket_server" => &["CODE", "CODEREVIEW", "CROSS"],
        "azuredevops_go" => &["CODE", "CODEREVIEW", "CROSS", "CICD"],
        "jenkins" | "circleci" | "bamboo" => &["CICD", "CROSS"],
        "jira" => &["TICKET", "CROSS"],
        _ => &[],
    }
}

/// The name of the tool's scope config on one connection. DevLake's unique index on scope-config
/// names spans every connection of a plugin (a duplicate is a 500), so the connection id is part
/// of it: `devlake-autopilot-3`.
pub fn scope_config_name(base: &str, connection_id: u64) -> String {
    format!("{base}-{connection_id}")
}

/// The body of the scope config created for a connection of `plugin`. SCM and CI plugins get the
/// DORA deployment/production patterns; Jira gets nothing forced beyond its entities (issue type
/// mappings are site-specific and left to the operator).
pub fn default_scope_config(
    plugin: &str,
    connection_id: u64,
    config: &AutomationConfig,
) -> ScopeConfig {
    let mut rest = Map::new();
    if has_dora_patterns(plugin) {
        rest.insert(
            "deploymentPattern".into(),
            Value::String(config.deployment_pattern.clone()),
        );
        rest.insert(
            "productionPattern".into(),
            Value::String(config.production_pattern.clone()),
        );
    }
    ScopeConfig {
        id: 0,
        name: scope_config_name(&config.scope_config_name, connection_id),
        connection_id,
        entities: entities(plugin).iter().map(|e| e.to_string()).collect(),
        rest,
    }
}

/// The id of the tool's config if a listed scope already references it (saves listing the
/// connection's configs on every run).
pub fn find_in_scopes(items: &[ScopeListItem], name: &str) -> Option<u64> {
    items
        .iter()
        .filter_map(|i| i.scope_config.as_ref())
        .find(|c| c.name == name && c.id != 0)
        .map(|c| c.id)
}

pub fn find_by_name(configs: &[ScopeConfig], name: &str) -> Option<u64> {
    configs.iter().find(|c| c.name == name).map(|c| c.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devlake::models::Scope;
    use serde_json::json;

    #[test]
    fn scm_and_ci_get_dora_patterns_jira_does_not() {
        let c = AutomationConfig::default();
        let gh = serde_json::to_value(default_scope_config("github", 3, &c)).unwrap();
        assert_eq!(gh["name"], "devlake-autopilot-3");
        assert_eq!(gh["connectionId"], 3);
        assert_eq!(gh["deploymentPattern"], "(deploy|push-image)");
        assert_eq!(gh["productionPattern"], "prod(.*)");
        assert_eq!(
            gh["entities"],
            json!(["CODE", "TICKET", "CODEREVIEW", "CROSS", "CICD"])
        );
        let jenkins = serde_json::to_value(default_scope_config("jenkins", 1, &c)).unwrap();
        assert_eq!(jenkins["entities"], json!(["CICD", "CROSS"]));
        assert!(jenkins.get("deploymentPattern").is_some());
        let jira = serde_json::to_value(default_scope_config("jira", 1, &c)).unwrap();
        assert!(jira.get("deploymentPattern").is_none());
        assert!(jira.get("productionPattern").is_none());
        assert!(jira.get("typeMappings").is_none());
    }

    #[test]
    fn finds_the_config_through_the_scope_list() {
        let item = |cfg: Option<(&str, u64)>| ScopeListItem {
            scope: Scope(json!({"githubId": 1})),
            scope_config: cfg.map(|(n, id)| ScopeConfig {
                id,
                name: n.into(),
                connection_id: 1,
                entities: vec![],
                rest: Default::default(),
            }),
            blueprints: vec![],
        };
        let items = vec![
            item(None),
            item(Some(("team-rules", 4))),
            item(Some(("devlake-autopilot", 9))),
        ];
        assert_eq!(find_in_scopes(&items, "devlake-autopilot"), Some(9));
        assert_eq!(find_in_scopes(&items[..2], "devlake-autopilot"), None);
    }
}
