//! The manual re-run action: trigger named projects, or every managed project whose last
//! pipeline failed, with an optional full sync.

use futures::TryStreamExt;

use crate::devlake::models::{Project, TriggerRequest};

use super::blueprints::is_managed;
use super::payload::{RerunRequest, RerunTarget};
use super::summary::{At, Report};
use super::trigger::{self, last_failed, Candidate};
use super::Ctx;
use crate::job::Stop;

pub(crate) async fn run(
    ctx: &Ctx<'_>,
    req: &RerunRequest,
    report: &mut Report,
) -> Result<(), Stop> {
    let request = TriggerRequest {
        skip_collectors: false,
        full_sync: req.full_sync,
    };
    match &req.target {
        RerunTarget::Projects(names) => {
            let mut candidates = Vec::new();
            for name in names {
                let at = At {
                    project: Some(name),
                    ..Default::default()
                };
                match ctx.devlake.project(name).await {
                    Ok(Some(p)) => match Candidate::of(&p, "rerun") {
                        Some(c) => candidates.push(c),
                        None => report.error_message(
                            "rerun",
                            &at,
                            "the project has no blueprint".into(),
                            false,
                        ),
                    },
                    Ok(None) => report.error_message(
                        "rerun",
                        &at,
                        format!("project {name:?} does not exist in DevLake"),
                        false,
                    ),
                    Err(e) => {
                        let e = Stop::pass(e)?;
                        report.error("rerun", &at, &e);
                    }
                }
            }
            // Named explicitly by an operator: paced, but not capped.
            trigger::run(ctx, candidates, request, None, report).await
        }
        RerunTarget::Failed => {
            let projects: Vec<Project> = match ctx.devlake.projects().try_collect().await {
                Ok(p) => p,
                Err(e) => {
                    // Without the project list nothing can be selected: the run cannot proceed.
                    return Err(Stop::DevLake(e));
                }
            };
            let candidates: Vec<Candidate> = projects
                .iter()
                .filter(|p| is_managed(p, &ctx.config.label) && last_failed(p))
                .filter_map(|p| Candidate::of(p, "lastFailed"))
                .collect();
            trigger::run(
                ctx,
                candidates,
                request,
                Some(ctx.config.trigger_max_per_run),
                report,
            )
            .await
        }
    }
}
