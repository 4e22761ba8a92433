//! Records every tracing event and span field as text, so tests can assert what the code logs
//! (and what it must never log).
//!
//! A capture installed with `tracing::subscriber::set_default` sees only what its own thread
//! logs, and only if each callsite was found interesting: tracing decides that once per callsite,
//! process-wide, on the thread that reaches it first, and while the capture is the only
//! dispatcher, a sibling test's thread (no subscriber) reaching the same callsite first settles it
//! as "never" and the capture misses the event. A test that captures runs itself [`alone`] in a
//! child process first, where its own thread is the only one reaching any callsite.

use std::fmt::Write as _;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Clone, Default)]
pub struct Capture {
    text: Arc<Mutex<String>>,
    next_id: Arc<AtomicU64>,
}

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl Capture {
    pub fn text(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = self.text.lock().unwrap();
        span.record(&mut Line(&mut text));
        text.push('\n');
        Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut text = self.text.lock().unwrap();
        values.record(&mut Line(&mut text));
        text.push('\n');
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = self.text.lock().unwrap();
        let _ = write!(text, "{} ", event.metadata().level());
        event.record(&mut Line(&mut text));
        text.push('\n');
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// The variable that tells a child test process which test it runs alone.
const ALONE: &str = "DEVLAKE_TESTKIT_ALONE";

/// Whether the calling test runs alone in its process (see the module documentation). When it
/// does not, runs `test` (its name within the test binary, as `cargo test` lists it, e.g.
/// `devlake::api_key_mode_good_missing_and_wrong_keys`) again as the only test of a child
/// process of the same binary, panics with the child's output if it failed or ran no test, and
/// returns `false`: the caller returns at once, its checks made by the child.
///
/// ```text
/// if !log_capture::alone("devlake::api_key_mode_good_missing_and_wrong_keys") {
///     return;
/// }
/// ```
pub fn alone(test: &str) -> bool {
    if std::env::var(ALONE).is_ok_and(|t| t == test) {
        return true;
    }
    let binary = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(&binary)
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(ALONE, test)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{test}, run alone, failed:\n{text}");
    assert!(
        text.contains("test result: ok. 1 passed"),
        "no test named {test} ran alone:\n{text}"
    );
    false
}
