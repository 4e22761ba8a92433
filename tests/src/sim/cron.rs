//! Validation of `cronConfig` the way robfig/cron v3 `ParseStandard` accepts it:
//! five fields `min hour dom month dow`, or a descriptor such as `@daily` / `@every 6h`.

pub(crate) fn validate(spec: &str) -> Result<(), String> {
    let spec = spec.trim();
    let spec = match spec.split_once(' ') {
        Some((tz, rest)) if tz.starts_with("TZ=") || tz.starts_with("CRON_TZ=") => rest.trim(),
        _ => spec,
    };
    if let Some(desc) = spec.strip_prefix('@') {
        return match desc {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match desc.strip_prefix("every ") {
                Some(d) if valid_go_duration(d.trim()) => Ok(()),
                _ => Err(format!("unrecognized descriptor: {spec}")),
            },
        };
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {spec}",
            fields.len()
        ));
    }
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let bounds: [(u32, u32, &[&str], u32); 5] = [
        (0, 59, &[], 0),
        (0, 23, &[], 0),
        (1, 31, &[], 0),
        (1, 12, &MONTHS, 1),
        (0, 6, &DAYS, 0),
    ];
    for (field, (lo, hi, names, name_base)) in fields.iter().zip(bounds) {
        validate_field(field, lo, hi, names, name_base)?;
    }
    Ok(())
}

fn validate_field(
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<(), String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Ok(n) = s.parse::<u32>() {
            return Ok(n);
        }
        names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| i as u32 + name_base)
            .ok_or_else(|| format!("failed to parse int from {s}"))
    };
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        if let Some(step) = step {
            match step.parse::<u32>() {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("invalid step in {part}")),
            }
        }
        let (start, end) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, v)
        };
        if start < lo || end > hi || start > end {
            return Err(format!("value out of range ({lo}-{hi}): {part}"));
        }
    }
    Ok(())
}

fn valid_go_duration(d: &str) -> bool {
    // Go durations: sequence of <number><unit>, e.g. 1h30m, 6h, 90s.
    if d.is_empty() {
        return false;
    }
    let mut rest = d;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return false;
        }
        rest = &rest[num_len..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .find(|u| rest.starts_with(*u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_standard_specs() {
        for s in [
            "0 0 * * *",
            "0 0 * * 1",
            "0 0 1 * *",
            "*/15 2-4 * JAN-MAR mon,fri",
            "@daily",
            "@every 6h",
            "@every 1h30m",
        ] {
            assert!(validate(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "0 0 * *",
            "61 0 * * *",
            "0 0 * * 8",
            "@sometimes",
            "every day",
            "@every x",
        ] {
            assert!(validate(s).is_err(), "{s}");
        }
    }
}
