//! Golden files: the exact expected output of a rendering or a run, kept under `tests/golden/`.
//! A test compares what it produced with the file; `UPDATE_GOLDEN=1` rewrites the file instead,
//! and the diff is then reviewed like any other change (docs/development.md, "Golden files").

use std::path::PathBuf;

use serde_json::Value;

use crate::stack::repo_root;

/// `tests/golden/<name>`.
pub fn golden_path(name: &str) -> PathBuf {
    repo_root().join("tests/golden").join(name)
}

/// Compares `actual` with the golden file `name` (under `tests/golden/`), or rewrites it when
/// `UPDATE_GOLDEN=1`. A mismatch names the first differing line and prints the whole output.
pub fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    if expected != actual {
        let first_diff = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the actual output at line {}:\n  golden: {:?}\n  actual: {:?}\n\
             (UPDATE_GOLDEN=1 rewrites it after a deliberate change)\n--- actual output ---\n{actual}",
            path.display(),
            first_diff + 1,
            expected.lines().nth(first_diff),
            actual.lines().nth(first_diff),
        );
    }
}

/// A run summary as its golden file holds it: pretty-printed with sorted keys and a final
/// newline, with what a wall clock decides zeroed (`durationMs` wherever it appears and every
/// entry of `phaseMs`). Everything else a run reports follows from its `now`, the simulator's
/// state and the store's, so two runs of the same scenario give the same text.
pub fn summary_text(summary: &Value) -> String {
    let mut v = summary.clone();
    normalise_timing(&mut v);
    let mut text = serde_json::to_string_pretty(&v).expect("a JSON value serialises");
    text.push('\n');
    text
}

fn normalise_timing(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    ("durationMs", value @ Value::Number(_)) => *value = 0.into(),
                    ("phaseMs", Value::Object(phases)) => {
                        for phase in phases.values_mut() {
                            *phase = 0.into();
                        }
                    }
                    (_, value) => normalise_timing(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise_timing),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timing_is_zeroed_and_keys_are_sorted() {
        let text = summary_text(&json!({
            "status": "ok", "durationMs": 1480, "phaseMs": {"trigger": 5303, "connections": 93},
            "nested": [{"durationMs": 7, "count": 3}]
        }));
        assert_eq!(
            text,
            "{\n  \"durationMs\": 0,\n  \"nested\": [\n    {\n      \"count\": 3,\n      \"durationMs\": 0\n    }\n  ],\n  \"phaseMs\": {\n    \"connections\": 0,\n    \"trigger\": 0\n  },\n  \"status\": \"ok\"\n}\n"
        );
    }
}
