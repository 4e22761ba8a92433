//! A randomized day and more of DevLake, compressed: the monitor runs every 5 simulated minutes
//! (a controlled simulator clock) over a world of projects whose pipelines are queued, run, fail,
//! are re-run (old and new, by hand and by the auto-rerun), cancelled, interrupted by restarts
//! with and without `RESUME_PIPELINES`, and whose projects are created, deleted and renamed,
//! while DevLake answers with 5xx, dropped connections and latency, and some invocations are
//! delivered twice at once. At the end, the failures recorded must be exactly the simulator's
//! own log of failed ends, and every live project's latest status DevLake's.
//!
//! The world only changes a pipeline after a successful monitor run has seen its current state
//! (the monitor's documented limit: a re-run of an old pipeline that is not its project's open
//! failure, queued, run and ended entirely between two runs, is not seen).
//!
//! Reproducible: `SOAK_SEED` (printed on failure) picks the world; `SOAK_RUNS` its length.
//! The store is the in-memory one, which answers the operations the monitor uses as DynamoDB
//! does (conditional commits, conditional cursor saves, conditional deletes).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use devlake_autopilot::cloudwatch::MemorySink;
use devlake_autopilot::devlake::{ClientConfig, DevLakeClient};
use devlake_autopilot::monitor::{Deadline, Monitor, MonitorSettings, Request};
use devlake_autopilot::store::{MemoryStore, MonitorStore};
use devlake_testkit::sim::{FaultRule, Fixture, PipelineSeed, SimHandle, SimOptions, Simulator};
use serde_json::Value;

const DEFAULT_SEED: u64 = 20_261_128;
const DEFAULT_RUNS: usize = 320;
const COUNTED: [&str; 2] = ["TASK_FAILED", "TASK_PARTIAL"];

/// splitmix64: small, seedable, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Prints the seed if the test fails, so the world can be replayed.
struct SeedOnFailure(u64);

impl Drop for SeedOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("soak test failed; replay with SOAK_SEED={}", self.0);
        }
    }
}

#[derive(Debug, Clone)]
struct Row {
    id: u64,
    blueprint_id: u64,
    status: String,
    updated_at: DateTime<Utc>,
}

fn row(v: &Value) -> Row {
    Row {
        id: v["id"].as_u64().unwrap(),
        blueprint_id: v["blueprintId"].as_u64().unwrap(),
        status: v["status"].as_str().unwrap().to_string(),
        updated_at: v["updatedAt"].as_str().unwrap().parse().unwrap(),
    }
}

const FINISHED: [&str; 4] = [
    "TASK_COMPLETED",
    "TASK_FAILED",
    "TASK_PARTIAL",
    "TASK_CANCELLED",
];

struct World {
    sim: SimHandle,
    rng: Rng,
    /// Live projects: name → blueprint id.
    live: BTreeMap<String, u64>,
    /// Blueprints of deleted projects (their pipelines are never touched again).
    deleted: BTreeSet<u64>,
    /// Renamed projects: new name → when.
    renamed_at: BTreeMap<String, DateTime<Utc>>,
    /// When the last monitor run that returned Ok ran (DevLake's clock).
    last_ok: DateTime<Utc>,
    next_name: usize,
    stats: BTreeMap<&'static str, u64>,
}

impl World {
    fn tick(&self) {
        self.sim.advance_clock(chrono::Duration::seconds(10));
    }

    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    fn rows(&self) -> Vec<Row> {
        self.live
            .values()
            .flat_map(|bp| self.sim.pipelines_of_blueprint(*bp))
            .map(|v| row(&v))
            .collect()
    }

    /// A pipeline the monitor has seen as it is now.
    fn settled(&self, r: &Row) -> bool {
        r.updated_at < self.last_ok
    }

    fn new_project(&mut self) {
        let name = format!("github/soak/svc-{}", self.next_name);
        self.next_name += 1;
        let bp = self.sim.create_project(&name).unwrap();
        self.live.insert(name, bp);
        self.count("projects created");
    }

    fn queue(&mut self, bp: u64) {
        self.sim
            .create_pipeline(PipelineSeed {
                blueprint_id: bp,
                status: "TASK_CREATED".into(),
                ..PipelineSeed::default()
            })
            .unwrap();
        self.tick();
        self.count("pipelines queued");
    }

    fn finish_randomly(&mut self, id: u64) {
        let roll = self.rng.below(100);
        let status = match roll {
            0..=54 => "TASK_COMPLETED",
            55..=89 => "TASK_FAILED",
            _ => "TASK_PARTIAL",
        };
        let message = if status == "TASK_COMPLETED" {
            ""
        } else {
            "collector failed"
        };
        self.sim.finish_pipeline(id, status, message).unwrap();
        self.tick();
        self.count("pipelines ended by the runner");
    }

    /// One step of DevLake activity between two monitor runs.
    async fn step(&mut self, devlake: &DevLakeClient, churn: bool) {
        // A restart first (before anything starts), once every running pipeline has been seen
        // running.
        // One snapshot per step (serialising every pipeline is the test's main cost); what this
        // step changes is not touched again until a monitor run has seen it.
        let mut rows = self.rows();
        let all_running_settled = rows
            .iter()
            .filter(|r| r.status == "TASK_RUNNING")
            .all(|r| self.settled(r));
        if churn && self.rng.chance(0.04) && all_running_settled {
            // Both settings, in turn.
            let resume = self
                .stats
                .contains_key("restarts with RESUME_PIPELINES=false")
                && !self
                    .stats
                    .contains_key("restarts with RESUME_PIPELINES=true")
                || self.rng.chance(0.5);
            let changed = self.sim.restart(resume);
            self.count(if resume {
                "restarts with RESUME_PIPELINES=true"
            } else {
                "restarts with RESUME_PIPELINES=false"
            });
            *self.stats.entry("pipelines interrupted").or_default() += changed.len() as u64;
            self.tick();
            rows = self.rows();
        }
        let busy: BTreeSet<u64> = rows
            .iter()
            .filter(|r| !FINISHED.contains(&r.status.as_str()))
            .map(|r| r.blueprint_id)
            .collect();
        if churn {
            let bps: Vec<u64> = self.live.values().copied().collect();
            for bp in bps {
                if !busy.contains(&bp) && self.rng.chance(0.15) {
                    self.queue(bp);
                }
            }
        }
        let last_ok = self.last_ok;
        let settled: Vec<Row> = rows
            .into_iter()
            .filter(|r| r.updated_at < last_ok)
            .collect();
        let mut touched: BTreeSet<u64> = BTreeSet::new();
        for r in &settled {
            match r.status.as_str() {
                "TASK_CREATED" | "TASK_RERUN" | "TASK_RESUME" => {
                    touched.insert(r.id);
                    if r.status != "TASK_RESUME" && churn && self.rng.chance(0.05) {
                        self.sim.cancel_pipeline(r.id).unwrap();
                        self.count("queued pipelines cancelled");
                    } else if self.rng.chance(if churn { 0.5 } else { 1.0 }) {
                        self.sim.start_pipeline(r.id).unwrap();
                        self.count("pipelines started");
                    }
                    self.tick();
                }
                "TASK_RUNNING" => {
                    touched.insert(r.id);
                    if churn && self.rng.chance(0.03) {
                        self.sim.cancel_pipeline(r.id).unwrap();
                        self.count("running pipelines cancelled");
                        self.tick();
                    } else if self.rng.chance(if churn { 0.4 } else { 1.0 }) {
                        self.finish_randomly(r.id);
                    }
                }
                _ => {}
            }
        }
        if !churn {
            return;
        }
        // Re-runs of ended pipelines of any age, from the Config UI (the simulator's handle)
        // or the API (the client).
        let rerunnable: Vec<Row> = settled
            .into_iter()
            .filter(|r| !touched.contains(&r.id))
            .filter(|r| {
                matches!(
                    r.status.as_str(),
                    "TASK_FAILED" | "TASK_PARTIAL" | "TASK_CANCELLED"
                )
            })
            .collect();
        for _ in 0..2 {
            if !rerunnable.is_empty() && self.rng.chance(0.35) {
                let r = rerunnable[self.rng.below(rerunnable.len())].clone();
                let done = if self.rng.chance(0.5) {
                    self.sim.rerun_pipeline(r.id).is_ok()
                } else {
                    devlake.rerun_pipeline(r.id).await.is_ok()
                };
                if done {
                    self.count("re-runs requested");
                }
                self.tick();
            }
        }
        // Projects come and go, and get renamed.
        if self.rng.chance(0.02) {
            self.new_project();
            self.tick();
        }
        if self.live.len() > 6 && self.rng.chance(0.03) {
            // A project whose pipelines have all ended and been seen (DevLake refuses to delete
            // one with unfinished pipelines).
            let quiet: Vec<String> = self
                .live
                .iter()
                .filter(|(_, bp)| {
                    self.sim
                        .pipelines_of_blueprint(**bp)
                        .iter()
                        .map(row)
                        .all(|r| FINISHED.contains(&r.status.as_str()) && self.settled(&r))
                })
                .map(|(name, _)| name.clone())
                .collect();
            if !quiet.is_empty() {
                let name = quiet[self.rng.below(quiet.len())].clone();
                let bp = self.live[&name];
                self.sim.delete_project(&name).unwrap();
                self.live.remove(&name);
                self.renamed_at.remove(&name);
                self.deleted.insert(bp);
                self.count("projects deleted");
                self.tick();
            }
        }
        if self.rng.chance(0.015) {
            let names: Vec<String> = self.live.keys().cloned().collect();
            let name = names[self.rng.below(names.len())].clone();
            let new = format!("{name}-r{}", self.next_name);
            self.next_name += 1;
            self.sim.rename_project(&name, &new).unwrap();
            let bp = self.live.remove(&name).unwrap();
            self.renamed_at.remove(&name);
            self.live.insert(new.clone(), bp);
            self.renamed_at.insert(new, self.sim.now());
            self.count("projects renamed");
            self.tick();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_day_of_devlake_every_failure_recorded_once_and_latest_status_right() {
    let seed: u64 = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let runs: usize = std::env::var("SOAK_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_RUNS);
    let _guard = SeedOnFailure(seed);
    eprintln!("soak: SOAK_SEED={seed} SOAK_RUNS={runs}");

    let sim = Simulator::start_with(
        Fixture::empty(),
        SimOptions {
            seed,
            request_log_capacity: 1_000,
            ..SimOptions::default()
        },
    )
    .await;
    let handle = sim.handle();
    // An hour before midnight: the runs cross UTC days (daily removal of deleted projects).
    let start = Utc.with_ymd_and_hms(2026, 11, 28, 23, 0, 0).unwrap();
    handle.set_clock(Some(start));
    let devlake = DevLakeClient::new(ClientConfig {
        endpoint: sim.url(),
        request_timeout: Duration::from_secs(5),
        retry_base_delay: Duration::from_millis(1),
        retry_max_delay: Duration::from_millis(4),
        max_retries: 3,
        ..ClientConfig::default()
    })
    .unwrap();
    let store = MemoryStore::new();
    let sink = MemorySink::new();
    let settings = MonitorSettings {
        auto_rerun_max: 2,
        ..MonitorSettings::default()
    };
    let monitor = Monitor {
        settings: &settings,
        devlake: &devlake,
        store: &store,
        sink: &sink,
    };
    let mut world = World {
        sim: handle.clone(),
        rng: Rng(seed),
        live: BTreeMap::new(),
        deleted: BTreeSet::new(),
        renamed_at: BTreeMap::new(),
        last_ok: start,
        next_name: 0,
        stats: BTreeMap::new(),
    };
    for _ in 0..12 {
        world.new_project();
    }
    // History from before the monitor's first look-back: hundreds of old pipelines, most of them
    // failed, far below the first page of any listing. Re-runs of them are re-runs of old
    // pipelines; their first ends are not the simulator's (seeded rows are not ends).
    let history: Vec<PipelineSeed> = (0..360u32)
        .map(|i| {
            let bp = world.live.values().nth(i as usize % 12).copied().unwrap();
            let created =
                start - chrono::Duration::days(12) + chrono::Duration::minutes(30 * i64::from(i));
            PipelineSeed {
                blueprint_id: bp,
                status: if i % 5 < 3 {
                    "TASK_FAILED"
                } else {
                    "TASK_COMPLETED"
                }
                .into(),
                created_at: Some(created),
                began_at: Some(created + chrono::Duration::seconds(5)),
                finished_at: Some(created + chrono::Duration::minutes(10)),
                message: "old failure".into(),
                ..PipelineSeed::default()
            }
        })
        .collect();
    handle.insert_pipelines(history).unwrap();

    let mut run_at = start;
    let run = |now: DateTime<Utc>| monitor.run(now, Request::default(), Deadline::none());
    for _ in 0..runs {
        world.step(&devlake, true).await;
        run_at += chrono::Duration::minutes(5);
        handle.set_clock(Some(run_at));
        // DevLake misbehaves during some runs.
        if world.rng.chance(0.2) {
            handle.set_error_rate(0.08, 503);
            world.count("runs with random 503s");
        }
        if world.rng.chance(0.05) {
            let times = 1 + world.rng.below(3) as u32;
            handle.add_fault_rule(FaultRule::reset("GET", "/pipelines", times));
            world.count("runs with dropped connections");
        }
        if world.rng.chance(0.1) {
            handle.set_latency(Duration::from_millis(2));
        }
        let ok = if world.rng.chance(0.1) {
            world.count("duplicate concurrent invocations");
            let (a, b) = tokio::join!(run(run_at), run(run_at));
            a.is_ok() || b.is_ok()
        } else {
            run(run_at).await.is_ok()
        };
        handle.clear_faults();
        handle.set_error_rate(0.0, 503);
        if ok {
            world.last_ok = run_at;
        } else {
            world.count("monitor runs failed");
        }
        run_at += chrono::Duration::seconds(1);
        handle.set_clock(Some(run_at));
    }

    // Wind down without faults: every pipeline ends, renamed projects without an end since
    // their rename get one, and a run on the next UTC day removes what DevLake no longer has.
    for _ in 0..40 {
        world.step(&devlake, false).await;
        run_at += chrono::Duration::minutes(5);
        handle.set_clock(Some(run_at));
        monitor
            .run(run_at, Request::default(), Deadline::none())
            .await
            .expect("monitor run without faults");
        world.last_ok = run_at;
        run_at += chrono::Duration::seconds(1);
        handle.set_clock(Some(run_at));
        if handle.unfinished_pipelines().is_empty() {
            let ends = handle.ends();
            let stale: Vec<u64> = world
                .renamed_at
                .iter()
                .filter(|(name, at)| {
                    let bp = world.live[*name];
                    !ends.iter().any(|e| e.blueprint_id == bp && e.at > **at)
                })
                .map(|(name, _)| world.live[name])
                .collect();
            if stale.is_empty() {
                break;
            }
            for bp in stale {
                world.queue(bp);
            }
        }
    }
    assert!(
        handle.unfinished_pipelines().is_empty(),
        "the world did not wind down"
    );
    let next_day = (run_at + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(0, 5, 0)
        .unwrap()
        .and_utc();
    handle.set_clock(Some(next_day));
    for k in 0..2 {
        monitor
            .run(
                next_day + chrono::Duration::minutes(5 * k),
                Request::default(),
                Deadline::none(),
            )
            .await
            .expect("final runs");
    }

    // 1. Every failed end in the simulator's log recorded exactly once, nothing else.
    let ends = handle.ends();
    let expected: BTreeSet<(u64, DateTime<Utc>)> = ends
        .iter()
        .filter(|e| COUNTED.contains(&e.status.as_str()))
        .map(|e| (e.pipeline_id, e.at))
        .collect();
    let failures = store.failures();
    let recorded: BTreeSet<(u64, DateTime<Utc>)> = failures
        .iter()
        .map(|f| (f.pipeline_id, f.finished_at))
        .collect();
    assert_eq!(recorded.len(), failures.len(), "a failure recorded twice");
    let missed: Vec<_> = expected.difference(&recorded).collect();
    let extra: Vec<_> = recorded.difference(&expected).collect();
    assert!(
        missed.is_empty() && extra.is_empty(),
        "missed {missed:?}\nextra {extra:?}"
    );

    // 2. Every live project's latest status is DevLake's.
    let mut checked = 0;
    for (name, bp) in &world.live {
        let Some(latest) = ends
            .iter()
            .filter(|e| e.blueprint_id == *bp)
            .max_by_key(|e| (e.at, e.pipeline_id))
        else {
            continue;
        };
        let state = store
            .project(name)
            .unwrap_or_else(|| panic!("no state for live project {name}"));
        assert_eq!(
            state.last_status.as_deref(),
            Some(latest.status.as_str()),
            "{name}"
        );
        assert_eq!(state.last_finished_at, Some(latest.at), "{name}");
        checked += 1;
    }

    // 3. Deleted projects and old names are gone from the table (and the metrics page).
    let stored: BTreeSet<String> = store
        .all_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.state.project_name)
        .collect();
    let live: BTreeSet<String> = world.live.keys().cloned().collect();
    assert!(
        stored.is_subset(&live),
        "stale projects: {:?}",
        stored.difference(&live).collect::<Vec<_>>()
    );

    world.stats.insert("pipeline ends", ends.len() as u64);
    world
        .stats
        .insert("failures recorded", failures.len() as u64);
    world.stats.insert("live projects checked", checked);
    eprintln!("soak: {runs} runs, {:#?}", world.stats);
    // The world exercised what it is meant to.
    for what in [
        "re-runs requested",
        "restarts with RESUME_PIPELINES=true",
        "restarts with RESUME_PIPELINES=false",
        "projects deleted",
        "projects renamed",
        "queued pipelines cancelled",
        "duplicate concurrent invocations",
        "runs with random 503s",
    ] {
        assert!(
            world.stats.get(what).copied().unwrap_or(0) > 0,
            "the world never had: {what}"
        );
    }
    assert!(!world.deleted.is_empty());
}
