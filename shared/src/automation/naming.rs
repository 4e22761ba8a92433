//! Project names: `PROJECT_NAME_TEMPLATE` and DevLake's 100-byte limit.

use std::fmt;

/// DevLake refuses project names longer than this (`len(name) > 100` in Go, i.e. bytes).
pub const MAX_PROJECT_NAME_BYTES: usize = 100;

/// The placeholders a template may use.
pub const PLACEHOLDERS: [&str; 6] = [
    "plugin",
    "connectionId",
    "connectionName",
    "name",
    "fullName",
    "scopeId",
];

/// Placeholders that differ between the scopes of one connection. A template without any of them
/// would give every scope the same project name.
const SCOPE_SPECIFIC: [&str; 3] = ["name", "fullName", "scopeId"];

/// Everything a project name can be made of, for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameParts<'a> {
    pub plugin: &'a str,
    pub connection_id: u64,
    pub connection_name: &'a str,
    pub name: &'a str,
    pub full_name: &'a str,
    pub scope_id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Placeholder(String),
}

/// A parsed `PROJECT_NAME_TEMPLATE`, validated once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplate {
    source: String,
    pieces: Vec<Piece>,
}

/// Why a template was refused (the caller names the variable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(pub String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl NameTemplate {
    pub const DEFAULT: &'static str = "{plugin}/{fullName}";

    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = source;
        while !rest.is_empty() {
            match rest.find(['{', '}']) {
                None => {
                    pieces.push(Piece::Text(rest.to_string()));
                    rest = "";
                }
                Some(at) if rest.as_bytes()[at] == b'}' => {
                    return Err(TemplateError(format!(
                        "unmatched `}}` in {source:?}; placeholders are {}",
                        Self::placeholder_list()
                    )));
                }
                Some(at) => {
                    if at > 0 {
                        pieces.push(Piece::Text(rest[..at].to_string()));
                    }
                    let after = &rest[at + 1..];
                    let close = after
                        .find('}')
                        .ok_or_else(|| TemplateError(format!("unclosed `{{` in {source:?}")))?;
                    let name = &after[..close];
                    if !PLACEHOLDERS.contains(&name) {
                        return Err(TemplateError(format!(
                            "unknown placeholder {{{name}}} in {source:?}; placeholders are {}",
                            Self::placeholder_list()
                        )));
                    }
                    pieces.push(Piece::Placeholder(name.to_string()));
                    rest = &after[close + 1..];
                }
            }
        }
        let specific = pieces.iter().any(|p| match p {
            Piece::Placeholder(name) => SCOPE_SPECIFIC.contains(&name.as_str()),
            Piece::Text(_) => false,
        });
        if !specific {
            return Err(TemplateError(format!(
                "{source:?} uses none of {{name}}, {{fullName}}, {{scopeId}}, so every scope of a connection would get the same project name"
            )));
        }
        Ok(NameTemplate {
            source: source.to_string(),
            pieces,
        })
    }

    fn placeholder_list() -> String {
        PLACEHOLDERS
            .iter()
            .map(|p| format!("{{{p}}}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn render(&self, parts: &NameParts<'_>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Placeholder(p) => match p.as_str() {
                    "plugin" => out.push_str(parts.plugin),
                    "connectionId" => out.push_str(&parts.connection_id.to_string()),
                    "connectionName" => out.push_str(parts.connection_name),
                    "name" => out.push_str(parts.name),
                    "fullName" => out.push_str(parts.full_name),
                    "scopeId" => out.push_str(parts.scope_id),
                    _ => unreachable!("placeholders are validated by parse"),
                },
            }
        }
        out.trim().to_string()
    }
}

impl Default for NameTemplate {
    fn default() -> Self {
        NameTemplate::parse(Self::DEFAULT).expect("the default template is valid")
    }
}

/// Whether DevLake would accept the name (non-empty, at most 100 bytes).
pub fn check_project_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the project name template rendered an empty name".to_string());
    }
    if name.len() > MAX_PROJECT_NAME_BYTES {
        return Err(format!(
            "the name is {} bytes long; DevLake accepts at most {MAX_PROJECT_NAME_BYTES}",
            name.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> NameParts<'static> {
        NameParts {
            plugin: "github",
            connection_id: 3,
            connection_name: "GitHub Cloud",
            name: "api",
            full_name: "acme/api",
            scope_id: "123456",
        }
    }

    #[test]
    fn default_is_plugin_and_full_name() {
        assert_eq!(NameTemplate::default().render(&parts()), "github/acme/api");
    }

    #[test]
    fn every_placeholder_renders() {
        let t = NameTemplate::parse(
            "{plugin}-{connectionId}-{connectionName}-{name}-{fullName}-{scopeId}",
        )
        .unwrap();
        assert_eq!(
            t.render(&parts()),
            "github-3-GitHub Cloud-api-acme/api-123456"
        );
        assert_eq!(
            NameTemplate::parse("{fullName}").unwrap().render(&parts()),
            "acme/api"
        );
    }

    #[test]
    fn refuses_unknown_unbalanced_and_scope_blind_templates() {
        let e = NameTemplate::parse("{plugin}/{repo}").unwrap_err();
        assert!(e.0.contains("unknown placeholder {repo}"), "{e}");
        assert!(e.0.contains("{fullName}"), "{e}");
        assert!(NameTemplate::parse("{plugin/{name}")
            .unwrap_err()
            .0
            .contains("unknown placeholder"));
        assert!(NameTemplate::parse("{name")
            .unwrap_err()
            .0
            .contains("unclosed"));
        assert!(NameTemplate::parse("a}{name}")
            .unwrap_err()
            .0
            .contains("unmatched"));
        assert!(NameTemplate::parse("{plugin}-{connectionId}")
            .unwrap_err()
            .0
            .contains("same project name"));
        assert!(NameTemplate::parse("").is_err());
    }

    #[test]
    fn names_are_limited_in_bytes_not_chars() {
        assert!(check_project_name(&"a".repeat(100)).is_ok());
        assert!(check_project_name(&"a".repeat(101)).is_err());
        // 50 two-byte characters = 100 bytes: fine; 51 = 102 bytes: too long.
        assert!(check_project_name(&"é".repeat(50)).is_ok());
        let e = check_project_name(&"é".repeat(51)).unwrap_err();
        assert!(e.contains("102 bytes"), "{e}");
        assert!(check_project_name("").is_err());
    }
}
