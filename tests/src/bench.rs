//! Shared pieces of the benchmark binaries: the simulator as a separate process (so a bench's
//! peak RSS is the code under test, not the fake DevLake's 100k rows) and memory readings.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// A `Vm*` field of /proc/self/status (`"VmHWM:"` = peak RSS), in kB.
pub fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Peak resident set size of this process so far, in MB.
pub fn peak_rss_mb() -> f64 {
    proc_status_kb("VmHWM:").unwrap_or(0) as f64 / 1024.0
}

/// `devlake-sim` running as a child process; killed on drop.
pub struct ExternalSim {
    child: Child,
    url: String,
}

impl ExternalSim {
    /// Starts `devlake-sim` (built next to the running binary) with `args` on a free port and
    /// waits for its "listening on" line.
    pub fn spawn(args: &[&str]) -> Result<ExternalSim> {
        let exe = sim_binary()?;
        let mut child = Command::new(&exe)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(line) => {
                    let line = line?;
                    if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                        break url.to_string();
                    }
                }
                None => bail!("devlake-sim exited before it was ready"),
            }
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(ExternalSim { child, url })
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for ExternalSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sim_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("devlake-sim");
    if !exe.exists() {
        bail!(
            "{} not found: build the workspace binaries first (cargo build --workspace --bins)",
            exe.display()
        );
    }
    Ok(exe)
}

/// `MemorySize` of `function` (a logical id) in `template.yaml`: Lambda bills duration times this.
pub fn function_memory_mb(function: &str) -> Result<u64> {
    function_property(function, "MemorySize")
}

/// `Timeout` of `function` (a logical id) in `template.yaml`, in seconds.
pub fn function_timeout_s(function: &str) -> Result<u64> {
    function_property(function, "Timeout")
}

/// A numeric property of `function` in `template.yaml`, else of `Globals.Function`.
fn function_property(function: &str, property: &str) -> Result<u64> {
    let template = crate::stack::load_template(&crate::stack::repo_root().join("template.yaml"))?;
    let value = template
        .get("Resources")
        .and_then(|r| r.get(function))
        .and_then(|f| f.get("Properties"))
        .and_then(|p| p.get(property))
        .or_else(|| {
            template
                .get("Globals")
                .and_then(|g| g.get("Function"))
                .and_then(|f| f.get(property))
        })
        .with_context(|| format!("{function} has no {property} in template.yaml"))?;
    value
        .as_u64()
        .with_context(|| format!("{function}: {property} is not a number"))
}

/// The `q`-quantile (0..=1) of `values` by nearest rank: of 20 values, p50 is the 10th smallest
/// and p95 the 19th.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
