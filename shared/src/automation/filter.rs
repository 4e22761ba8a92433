//! `SCOPE_INCLUDE` / `SCOPE_EXCLUDE`: globs over `{plugin}/{connectionId}/{fullName}`.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Which scopes the tool manages. `*` matches across `/`, so `github/*` is every GitHub scope and
/// `github/1/acme/*` every repository of the `acme` owner on connection 1. Matching is
/// case-sensitive, like DevLake's names.
#[derive(Debug, Clone)]
pub struct ScopeFilter {
    include: GlobSet,
    exclude: GlobSet,
    include_src: Vec<String>,
    exclude_src: Vec<String>,
}

impl ScopeFilter {
    /// `include` empty means everything.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self, (bool, String)> {
        let include_src: Vec<String> = if include.is_empty() {
            vec!["*".to_string()]
        } else {
            include.to_vec()
        };
        Ok(ScopeFilter {
            include: build(&include_src).map_err(|e| (true, e))?,
            exclude: build(exclude).map_err(|e| (false, e))?,
            include_src,
            exclude_src: exclude.to_vec(),
        })
    }

    pub fn all() -> Self {
        ScopeFilter::new(&[], &[]).expect("`*` is a valid glob")
    }

    /// The string globs are matched against.
    pub fn key(plugin: &str, connection_id: u64, full_name: &str) -> String {
        format!("{plugin}/{connection_id}/{full_name}")
    }

    pub fn matches(&self, plugin: &str, connection_id: u64, full_name: &str) -> bool {
        let key = Self::key(plugin, connection_id, full_name);
        self.include.is_match(&key) && !self.exclude.is_match(&key)
    }

    pub fn include(&self) -> &[String] {
        &self.include_src
    }

    pub fn exclude(&self) -> &[String] {
        &self.exclude_src
    }
}

fn build(globs: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for g in globs {
        let glob: Glob = GlobBuilder::new(g)
            .literal_separator(false)
            .build()
            .map_err(|e| format!("{g:?} is not a valid glob: {}", e.kind()))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_takes_everything() {
        let f = ScopeFilter::all();
        assert!(f.matches("jenkins", 2, "folder/sub/job"));
    }

    #[test]
    fn star_crosses_slashes_and_exclude_wins() {
        let f = ScopeFilter::new(
            &s(&["github/*", "gitlab/1/team/**"]),
            &s(&["*/archive-*", "github/1/acme/legacy"]),
        )
        .unwrap();
        assert!(f.matches("github", 1, "acme/api"));
        assert!(f.matches("github", 7, "x/y"));
        assert!(!f.matches("github", 1, "acme/legacy"));
        assert!(!f.matches("github", 1, "acme/archive-2020"));
        assert!(f.matches("gitlab", 1, "team/sub/proj"));
        assert!(!f.matches("gitlab", 2, "team/sub/proj"));
        assert!(!f.matches("jira", 1, "Board"));
    }

    #[test]
    fn bad_glob_is_reported_with_its_side() {
        let (include, msg) = ScopeFilter::new(&s(&["github/[abc"]), &[]).unwrap_err();
        assert!(include);
        assert!(msg.contains("github/[abc"), "{msg}");
        let (include, _) = ScopeFilter::new(&[], &s(&["a{b"])).unwrap_err();
        assert!(!include);
    }
}
