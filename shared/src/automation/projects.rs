//! One project per managed scope: which scopes get a new project, which already have theirs
//! (reconciled, never recreated), and which names cannot be used (conflicts).

use std::collections::{HashMap, HashSet};

use crate::devlake::models::Project;

use super::blueprints::{is_managed, references};
use super::naming::{check_project_name, NameParts, NameTemplate};
use super::sync::ManagedScope;

/// What happens to one scope's project.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<'a> {
    /// No project yet: create `name`.
    Create {
        scope: &'a ManagedScope,
        name: String,
    },
    /// The scope's managed project exists (found by name or by its blueprint's wiring).
    Existing {
        scope: &'a ManagedScope,
        project: &'a Project,
    },
    /// The name cannot be used; nothing is sent.
    Conflict {
        scope: &'a ManagedScope,
        name: String,
        reason: &'static str,
        message: String,
    },
    /// A new project must wait: the names came from an incomplete remote listing.
    Deferred {
        scope: &'a ManagedScope,
        name: String,
    },
}

pub fn render_name(template: &NameTemplate, s: &ManagedScope) -> String {
    template.render(&NameParts {
        plugin: &s.plugin,
        connection_id: s.connection_id,
        connection_name: &s.connection_name,
        name: &s.name,
        full_name: &s.full_name,
        scope_id: &s.scope_id,
    })
}

fn key(s: &ManagedScope) -> (&str, u64, &str) {
    (&s.plugin, s.connection_id, &s.scope_id)
}

/// Decides every scope's project, in the order of `scopes`.
///
/// 1. A scope owns the project carrying its rendered name when that project is managed and its
///    blueprint references the scope or nothing yet (a create whose PATCH never landed).
/// 2. Otherwise a managed project whose blueprint references the scope and that no scope owns by
///    name is the scope's project under an older name (template changed): reconciled, kept.
/// 3. Otherwise the name is created, unless it is too long, rendered twice in this run, or held
///    by another project (managed for another scope, or not managed at all): a conflict.
pub fn plan<'a>(
    scopes: &'a [ManagedScope],
    projects: &'a [Project],
    template: &NameTemplate,
    label: &str,
) -> Vec<Decision<'a>> {
    let by_name: HashMap<&str, &Project> = projects.iter().map(|p| (p.name.as_str(), p)).collect();
    let names: Vec<String> = scopes.iter().map(|s| render_name(template, s)).collect();

    // Pass 1: claims by name.
    let mut owner: HashMap<(&str, u64, &str), &Project> = HashMap::new();
    let mut claimed: HashSet<&str> = HashSet::new();
    for (s, name) in scopes.iter().zip(&names) {
        let Some(p) = by_name.get(name.as_str()) else {
            continue;
        };
        if claimed.contains(p.name.as_str()) || !is_managed(p, label) {
            continue;
        }
        let fits = match &p.blueprint {
            Some(bp) => {
                bp.connections.is_empty() || references(bp, &s.plugin, s.connection_id, &s.scope_id)
            }
            None => true,
        };
        if fits {
            owner.insert(key(s), p);
            claimed.insert(p.name.as_str());
        }
    }

    // Pass 2: claims by wiring, for projects not claimed by name. The managed projects wired to
    // each scope, in list order, are indexed once: a scan of every project per scope would be
    // quadratic (10,000 scopes × 10,000 projects at the sizes this tool is built for).
    let mut wired: HashMap<(&str, u64, &str), Vec<&Project>> = HashMap::new();
    for p in projects.iter().filter(|p| is_managed(p, label)) {
        let Some(bp) = &p.blueprint else { continue };
        let mut seen: HashSet<(&str, u64, &str)> = HashSet::new();
        for c in &bp.connections {
            for sc in &c.scopes {
                let k = (
                    c.plugin_name.as_str(),
                    c.connection_id,
                    sc.scope_id.as_str(),
                );
                if seen.insert(k) {
                    wired.entry(k).or_default().push(p);
                }
            }
        }
    }
    for s in scopes {
        if owner.contains_key(&key(s)) {
            continue;
        }
        let found = wired.get(&key(s)).and_then(|ps| {
            ps.iter()
                .copied()
                .find(|p| !claimed.contains(p.name.as_str()))
        });
        if let Some(p) = found {
            owner.insert(key(s), p);
            claimed.insert(p.name.as_str());
        }
    }

    // Pass 3: decisions.
    let mut first_use: HashMap<&str, &ManagedScope> = HashMap::new();
    let mut out = Vec::with_capacity(scopes.len());
    for (s, name) in scopes.iter().zip(&names) {
        if let Some(p) = owner.get(&key(s)) {
            out.push(Decision::Existing {
                scope: s,
                project: p,
            });
            continue;
        }
        if let Err(message) = check_project_name(name) {
            let reason = if name.is_empty() {
                "emptyName"
            } else {
                "nameTooLong"
            };
            out.push(Decision::Conflict {
                scope: s,
                name: name.clone(),
                reason,
                message,
            });
            continue;
        }
        if let Some(first) = first_use.get(name.as_str()) {
            out.push(Decision::Conflict {
                scope: s,
                name: name.clone(),
                reason: "duplicateName",
                message: format!(
                    "the name template gives this name to scope {}/{}/{} too; that scope keeps it",
                    first.plugin, first.connection_id, first.scope_id
                ),
            });
            continue;
        }
        first_use.insert(name.as_str(), s);
        match by_name.get(name.as_str()) {
            Some(p) if is_managed(p, label) => out.push(Decision::Conflict {
                scope: s,
                name: name.clone(),
                reason: "heldByManagedProjectOfAnotherScope",
                message: format!(
                    "project {:?} is managed by this tool but wired to another scope; left untouched",
                    p.name
                ),
            }),
            Some(p) => out.push(Decision::Conflict {
                scope: s,
                name: name.clone(),
                reason: "heldByUnmanagedProject",
                message: format!(
                    "project {:?} exists and is not managed by this tool (no {label:?} label); left untouched",
                    p.name
                ),
            }),
            None if !s.names_reliable => out.push(Decision::Deferred { scope: s, name: name.clone() }),
            None => out.push(Decision::Create { scope: s, name: name.clone() }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LABEL: &str = "devlake-autopilot";

    fn scope(id: &str, full: &str) -> ManagedScope {
        ManagedScope {
            plugin: "github".into(),
            connection_id: 1,
            connection_name: "gh".into(),
            scope_id: id.into(),
            name: full.rsplit('/').next().unwrap().into(),
            full_name: full.into(),
            names_reliable: true,
            has_scope_config: true,
        }
    }

    fn project(name: &str, labels: &[&str], scopes: &[&str]) -> Project {
        let conns = if scopes.is_empty() {
            json!([])
        } else {
            json!([{"pluginName": "github", "connectionId": 1,
                    "scopes": scopes.iter().map(|s| json!({"scopeId": s})).collect::<Vec<_>>()}])
        };
        serde_json::from_value(json!({
            "name": name,
            "blueprint": {"id": name.len(), "labels": labels, "connections": conns}
        }))
        .unwrap()
    }

    fn kinds(d: &[Decision<'_>]) -> Vec<String> {
        d.iter()
            .map(|d| match d {
                Decision::Create { name, .. } => format!("create {name}"),
                Decision::Existing { project, .. } => format!("existing {}", project.name),
                Decision::Conflict { name, reason, .. } => format!("conflict {name} {reason}"),
                Decision::Deferred { name, .. } => format!("deferred {name}"),
            })
            .collect()
    }

    #[test]
    fn creates_missing_and_keeps_existing() {
        let scopes = vec![scope("1", "acme/api"), scope("2", "acme/web")];
        let projects = vec![project("github/acme/api", &[LABEL], &["1"])];
        let d = plan(&scopes, &projects, &NameTemplate::default(), LABEL);
        assert_eq!(
            kinds(&d),
            vec!["existing github/acme/api", "create github/acme/web"]
        );
    }

    #[test]
    fn unmanaged_and_foreign_names_are_conflicts() {
        let scopes = vec![scope("1", "acme/api"), scope("2", "acme/web")];
        let projects = vec![
            project("github/acme/api", &["team"], &["1"]),
            project("github/acme/web", &[LABEL], &["99"]),
        ];
        let d = plan(&scopes, &projects, &NameTemplate::default(), LABEL);
        assert_eq!(
            kinds(&d),
            vec![
                "conflict github/acme/api heldByUnmanagedProject",
                "conflict github/acme/web heldByManagedProjectOfAnotherScope"
            ]
        );
    }

    #[test]
    fn a_scope_in_someone_elses_project_still_gets_its_own() {
        let scopes = vec![scope("1", "acme/api")];
        let projects = vec![project("Team dashboard", &[], &["1"])];
        let d = plan(&scopes, &projects, &NameTemplate::default(), LABEL);
        assert_eq!(kinds(&d), vec!["create github/acme/api"]);
    }

    #[test]
    fn unwired_project_created_by_the_tool_is_adopted() {
        let scopes = vec![scope("1", "acme/api")];
        let mut p = project("github/acme/api", &[], &[]);
        p.description = super::super::blueprints::project_description(LABEL, "github", 1, "1");
        let projects = vec![p];
        let d = plan(&scopes, &projects, &NameTemplate::default(), LABEL);
        assert_eq!(kinds(&d), vec!["existing github/acme/api"]);
    }

    #[test]
    fn renamed_template_keeps_the_old_project() {
        let scopes = vec![scope("1", "acme/api")];
        let projects = vec![project("old-name-api", &[LABEL], &["1"])];
        let d = plan(
            &scopes,
            &projects,
            &NameTemplate::parse("{name}").unwrap(),
            LABEL,
        );
        assert_eq!(kinds(&d), vec!["existing old-name-api"]);
    }

    #[test]
    fn long_duplicate_and_unreliable_names() {
        let long = format!("acme/{}", "x".repeat(120));
        let mut unreliable = scope("4", "acme/new");
        unreliable.names_reliable = false;
        let scopes = vec![
            scope("1", &long),
            scope("2", "a/api"),
            scope("3", "b/api"),
            unreliable,
        ];
        let d = plan(
            &scopes,
            &[],
            &NameTemplate::parse("{plugin}-{name}").unwrap(),
            LABEL,
        );
        let k = kinds(&d);
        assert!(k[0].ends_with("nameTooLong"), "{k:?}");
        assert_eq!(k[1], "create github-api");
        assert_eq!(k[2], "conflict github-api duplicateName");
        assert_eq!(k[3], "deferred github-new");
    }
}
