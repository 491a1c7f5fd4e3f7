//! `shardcast-loadtest`: a load-test harness for any Engine.IO v4 / Socket.IO v5 server.
//!
//! Modules in the order of a run:
//!
//! - [`plan`]: the command line, validated and bounded into a `Plan`, and the roster saying
//!   which connection does what in which worker and thread;
//! - [`target`]: `--url` and the loopback-only safety rule;
//! - [`coord`]: the coordinator: pre-flight checks, workers, setup barrier, phases and drain,
//!   server sampling, progress line;
//! - [`link`]: coordinator <-> worker messages, in-process or as JSON lines to worker processes;
//! - [`engine`]: the client threads of one process and their per-connection tasks;
//! - [`pacer`]: the per-thread high-resolution timer of the open-loop schedules;
//! - [`conn`]: the transports (WebSocket, HTTP long-polling) and the handshakes;
//! - [`proto`]: the sans-IO Engine.IO / Socket.IO codec and the hot-path scanners;
//! - [`stats`]: counters, HDR histograms, sequence windows;
//! - [`sys`]: clocks, rusage, /proc, uname;
//! - [`report`]: JSON, the human table and the HTML report; [`b64`]: base64 for histograms.
#![warn(missing_docs)]

pub mod b64;
pub mod conn;
pub mod coord;
pub mod engine;
pub mod hostile;
pub mod link;
pub mod pacer;
pub mod plan;
pub mod proto;
pub mod report;
pub mod rng;
pub mod soak;
pub mod stats;
pub mod sys;
pub mod target;
pub mod wsclient;

use anyhow::Context;

/// Runs a scenario command: the whole run, then the table on stdout and the files asked for.
/// Returns the report.
pub fn run_command(cmd: &plan::Command) -> anyhow::Result<report::Report> {
    let (plan, out) = plan::Plan::from_command(cmd)?;
    run_plan(plan, &out)
}

/// Runs a validated plan; see [`run_command`].
pub fn run_plan(plan: plan::Plan, out: &plan::Output) -> anyhow::Result<report::Report> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = rt.block_on(coord::run(plan, out))?;
    let report = report::build(&outcome);
    print!("{}", report::table(&report));
    if let Some(path) = &out.json {
        let text = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &out.report {
        let html = report::html(&report, &report::run_latencies(&outcome));
        std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}
