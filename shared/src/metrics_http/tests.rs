//! The metrics function's request checks: token comparison and trimming, bearer parsing, gzip
//! negotiation, and the settings' validation.

use super::*;

#[test]
fn token_comparison() {
    let token = MetricsToken::new("s3cret-token").unwrap();
    assert!(token.matches(b"s3cret-token"));
    assert!(!token.matches(b"s3cret-tokem"));
    assert!(!token.matches(b"s3cret-token "));
    assert!(!token.matches(b"s3cret"));
    assert!(!token.matches(b""));
    assert!(!format!("{token:?}").contains("s3cret"));
    assert!(MetricsToken::new("  ").is_err());
}

#[test]
fn token_is_trimmed() {
    let token = MetricsToken::new("abc\n").unwrap();
    assert!(token.matches(b"abc"));
    assert!(!token.matches(b"abc\n"));
}

#[test]
fn gzip_negotiation() {
    let ok = |s: &'static str| accepts_gzip(Some(&HeaderValue::from_static(s)));
    assert!(ok("gzip"));
    assert!(ok("deflate, gzip;q=0.5"));
    assert!(ok("*"));
    assert!(!ok("gzip;q=0"));
    assert!(!ok("identity"));
    assert!(!accepts_gzip(None));
}

#[test]
fn bearer_parsing() {
    let v = |s: &'static str| HeaderValue::from_static(s);
    assert_eq!(bearer_token(&v("Bearer abc")), Some(&b"abc"[..]));
    assert_eq!(bearer_token(&v("bearer   abc ")), Some(&b"abc"[..]));
    assert_eq!(bearer_token(&v("Basic abc")), None);
    assert_eq!(bearer_token(&v("Bearer")), None);
    assert_eq!(bearer_token(&v("Bearer ")), None);
    assert_eq!(bearer_token(&v("Bearerabc")), None);
}

#[test]
fn settings_validate_window_and_require_a_token() {
    let env: Env = [("TABLE_NAME", "t"), ("METRICS_TOKEN", "x")]
        .into_iter()
        .collect();
    let s = MetricsSettings::from_env(&env).unwrap();
    assert_eq!(s.failure_window_days, 7);
    assert_eq!(s.timezone, chrono_tz::Asia::Ho_Chi_Minh);

    let env: Env = [("TABLE_NAME", "t")].into_iter().collect();
    let err = MetricsSettings::from_env(&env).unwrap_err();
    assert_eq!(err.variable, "METRICS_TOKEN");

    let env: Env = [
        ("TABLE_NAME", "t"),
        ("METRICS_TOKEN", "x"),
        ("FAILURE_WINDOW_DAYS", "0"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        MetricsSettings::from_env(&env).unwrap_err().variable,
        "FAILURE_WINDOW_DAYS"
    );
}
