//! Size limits of what the functions write: run records (one DynamoDB item, at most 400 KB) and
//! log lines (CloudWatch Logs cuts an event at 256 KB). A summary of a run over thousands of
//! projects can list thousands of conflicts, errors or planned changes; the copy that goes into
//! a record or a log line keeps the first entries of each list and says how many there were.

use serde_json::{json, Map, Value};

/// Entries each list keeps in a run record and in the run's closing log line.
pub const RECORD_LIST_LIMIT: usize = 100;

/// Most bytes (as JSON) of the summary in a run record or a log line: well under DynamoDB's
/// 400 KB item limit (attribute names and the other attributes are counted there too) and
/// CloudWatch Logs' 256 KB event limit (the log line adds its other fields).
pub const RECORD_SUMMARY_MAX_BYTES: usize = 128 * 1024;

/// The store's last line of defence: a run record whose summary is larger than this (as JSON)
/// is stored with its status and counts only, so the record itself is never refused by
/// DynamoDB's 400 KB item limit.
pub const RECORD_ITEM_SUMMARY_MAX_BYTES: usize = 350 * 1024;

/// Most bytes (as JSON) of the summary a Lambda invocation answers with, under Lambda's 6 MB
/// limit of a synchronous response (a larger one fails the invocation after the run's work).
pub const RESPONSE_SUMMARY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// `summary` with each list at `paths` cut to its first entries so that the whole serialises to
/// at most `max_bytes`, starting from `limit` entries (`None`: all) and halving until it fits.
/// Every cut list is reported under `truncated` as `{"<path>": {"total": n, "shown": k}}`
/// (`path` joined with `.`); the counts elsewhere in the summary stay complete. An uncut
/// summary is returned unchanged.
pub fn bounded(
    summary: &Value,
    paths: &[&[&str]],
    limit: Option<usize>,
    max_bytes: usize,
) -> Value {
    let totals: Vec<usize> = paths
        .iter()
        .map(|p| list_at(summary, p).map_or(0, Vec::len))
        .collect();
    let longest = totals.iter().copied().max().unwrap_or(0);
    let mut limit = limit.unwrap_or(longest).min(longest);
    loop {
        let mut out = summary.clone();
        let mut truncated = Map::new();
        for (path, &total) in paths.iter().zip(&totals) {
            if total > limit {
                if let Some(list) = list_at_mut(&mut out, path) {
                    list.truncate(limit);
                }
                truncated.insert(path.join("."), json!({"total": total, "shown": limit}));
            }
        }
        if !truncated.is_empty() {
            if let Value::Object(o) = &mut out {
                o.insert("truncated".into(), Value::Object(truncated));
            }
        }
        if limit == 0 || serde_json::to_vec(&out).map_or(0, |v| v.len()) <= max_bytes {
            return out;
        }
        limit /= 2;
    }
}

/// The JSON size of `v` in bytes.
pub fn json_len(v: &Value) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

fn list_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Vec<Value>> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_array()
}

fn list_at_mut<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Vec<Value>> {
    path.iter().try_fold(v, |v, k| v.get_mut(k))?.as_array_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(conflicts: usize, projects: usize) -> Value {
        json!({
            "status": "ok",
            "counts": {"projectsConflicting": conflicts},
            "conflicts": (0..conflicts).map(|i| json!({"project": format!("github/acme/repo-{i:05}"), "message": "x".repeat(200)})).collect::<Vec<_>>(),
            "errors": [],
            "remaining": {"projects": (0..projects).map(|i| json!(format!("p{i}"))).collect::<Vec<_>>(), "triggers": 3},
        })
    }

    const PATHS: &[&[&str]] = &[&["conflicts"], &["errors"], &["remaining", "projects"]];

    #[test]
    fn small_summaries_are_unchanged() {
        let s = summary(3, 2);
        assert_eq!(bounded(&s, PATHS, Some(100), 1 << 20), s);
        assert_eq!(bounded(&s, PATHS, None, 1 << 20), s);
    }

    #[test]
    fn long_lists_keep_their_first_entries_and_say_how_many_there_were() {
        let s = summary(10_000, 150);
        let b = bounded(&s, PATHS, Some(RECORD_LIST_LIMIT), RECORD_SUMMARY_MAX_BYTES);
        assert_eq!(b["conflicts"].as_array().unwrap().len(), 100);
        assert_eq!(b["conflicts"][0], s["conflicts"][0]);
        assert_eq!(b["remaining"]["projects"].as_array().unwrap().len(), 100);
        assert_eq!(b["remaining"]["triggers"], 3);
        assert_eq!(b["counts"]["projectsConflicting"], 10_000);
        assert_eq!(
            b["truncated"],
            json!({"conflicts": {"total": 10_000, "shown": 100}, "remaining.projects": {"total": 150, "shown": 100}})
        );
        assert!(json_len(&b) <= RECORD_SUMMARY_MAX_BYTES);
    }

    #[test]
    fn the_byte_limit_halves_the_lists_until_they_fit() {
        let s = summary(10_000, 0);
        let b = bounded(&s, PATHS, None, 20_000);
        let shown = b["conflicts"].as_array().unwrap().len();
        assert!(json_len(&b) <= 20_000, "{}", json_len(&b));
        assert!(shown > 10 && shown < 100, "{shown}");
        assert_eq!(b["truncated"]["conflicts"]["shown"], shown);
        // Even a limit nothing fits in ends, with empty lists and the totals.
        let b = bounded(&s, PATHS, None, 10);
        assert_eq!(b["conflicts"], json!([]));
        assert_eq!(b["truncated"]["conflicts"]["total"], 10_000);
    }
}
