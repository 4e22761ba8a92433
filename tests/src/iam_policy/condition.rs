//! Condition evaluation: the String/Arn/Bool/Null operators with their `ForAllValues:`,
//! `ForAnyValue:` and `IfExists` forms, and IAM's `*`/`?` wildcard matching.

use super::*;

pub(super) const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringNotEquals",
    "StringEqualsIgnoreCase",
    "StringNotEqualsIgnoreCase",
    "StringLike",
    "StringNotLike",
    "ArnEquals",
    "ArnLike",
    "ArnNotEquals",
    "ArnNotLike",
    "Bool",
    "Null",
];

/// The base operator (without `ForAllValues:`/`ForAnyValue:` and `IfExists`), if supported.
pub(super) fn split_operator(operator: &str) -> (Option<&str>, &str, bool) {
    let (set, rest) = match operator.split_once(':') {
        Some((set, rest)) => (Some(set), rest),
        None => (None, operator),
    };
    match rest.strip_suffix("IfExists") {
        Some(base) => (set, base, true),
        None => (set, rest, false),
    }
}

pub(super) fn check_operator(operator: &str) -> Result<()> {
    let (set, base, _) = split_operator(operator);
    if !OPERATORS.contains(&base) || !matches!(set, None | Some("ForAllValues" | "ForAnyValue")) {
        bail!("condition operator {operator} is not supported by the evaluator");
    }
    Ok(())
}

pub(super) fn condition_holds(
    test: &ConditionTest,
    context: &BTreeMap<String, Vec<String>>,
) -> bool {
    let (set, base, if_exists) = split_operator(&test.operator);
    let negated = base.contains("Not");
    // Condition keys are case-insensitive.
    let present = context
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&test.key))
        .map(|(_, v)| v.as_slice());
    if base == "Null" {
        let wants_absent = test
            .values
            .iter()
            .any(|v| matches!(v, Pattern::Text(t) if t == "true"));
        return present.is_none() == wants_absent;
    }
    let matches_value = |policy: &str, value: &str| match base {
        "StringEquals" | "StringNotEquals" => policy == value,
        "StringEqualsIgnoreCase" | "StringNotEqualsIgnoreCase" | "Bool" => {
            policy.eq_ignore_ascii_case(value)
        }
        // ARN comparisons take wildcards in both the Equals and Like forms.
        _ => glob(policy, value, false),
    };
    // Whether `value` matches any of the policy's values (unknown ones never do).
    let one = |value: &str| -> bool {
        test.values.iter().any(|p| match p {
            Pattern::Unknown(_) => false,
            Pattern::Text(t) => matches_value(t, value),
        })
    };
    match set {
        Some("ForAllValues") => {
            present.is_none_or(|values| values.iter().all(|v| one(v) != negated))
        }
        Some("ForAnyValue") => {
            present.is_some_and(|values| values.iter().any(|v| one(v) != negated))
        }
        _ => match present {
            // A missing key fails a condition, except with IfExists or a negated operator.
            None => if_exists || negated,
            Some(values) => {
                if negated {
                    !values.iter().any(|v| one(v))
                } else {
                    values.iter().any(|v| one(v))
                }
            }
        },
    }
}

pub(super) fn pattern_matches(pattern: &Pattern, value: &str) -> bool {
    match pattern {
        Pattern::Text(p) => glob(p, value, false),
        Pattern::Unknown(_) => false,
    }
}

/// IAM wildcards: `*` any run of characters, `?` one character.
pub fn glob(pattern: &str, value: &str, ignore_case: bool) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = if ignore_case {
        (
            pattern.to_lowercase().chars().collect(),
            value.to_lowercase().chars().collect(),
        )
    } else {
        (pattern.chars().collect(), value.chars().collect())
    };
    let (mut pi, mut vi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}
