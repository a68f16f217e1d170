//! `scaletest demo`: flags → a validated `demo::Scenario` and `demo::Config` → `demo::run`,
//! with Ctrl-C turned into an early, orderly end; then the per-phase tables, checks and
//! sizing. Exit 0 only if every phase met its checks and the run its `--threshold`s.

use super::parse_duration;
use crate::Usage;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES: &str =
    "Everything runs on 127.0.0.1 as child processes of this one; their logs are in
RUN/logs/, the run's results.json and report.html in RUN/results/. Ctrl-C ends the run early
(results still written); no child outlives the demo, even if it is killed.

Scenarios: `default` (warm-up; servers and bots 1 → 4 with the rate stepping up; a rolling
update v1 → v2 that must fail no request; scale down), `lb-replicas` (seed 002: 30 connections
against 2, 5 and 10 replicas, 30 s each), `max-rate` (2 servers, 2 bots, the rate stepping up
every 6 s to 24,000/s, then by a quarter each step until one is not sustained: the highest
rate sustained with p99 under 10 ms), or a TOML file of [[phase]] tables and an optional
[search] (see the README). Every run ends with the highest rate it sustained.

Examples:
  scaletest demo                                 the UI's address first, then 100 s of phases
  scaletest demo --headless --duration 30s       the default, scaled to 30 s, no UI
  scaletest demo --scenario lb-replicas --headless
  scaletest demo --scenario max-rate --headless --balancer haproxy   the same layout with haproxy
  scaletest demo --scenario my.toml --keep       keep running afterwards for scaletest ctl
  scaletest ctl scale servers=8";

/// Arguments of `scaletest demo`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// A built-in scenario (default, lb-replicas, max-rate) or a TOML file.
    #[arg(long, default_value = "default")]
    scenario: String,
    /// Scale the scenario's phases so that they add up to this long.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// No UI: do not print its address (for CI and scripts).
    #[arg(long)]
    headless: bool,
    /// After the scenario, keep everything running (for ctl) until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Where run directories go (RUN = DIR/run-TIME; DIR/latest points at the newest).
    #[arg(long, default_value = "scaletest-demo")]
    dir: PathBuf,
    /// How long a server keeps answering after SIGTERM while the balancer takes it out.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    drain_delay: Duration,
    /// Print the percentile spectrum under each phase's tables.
    #[arg(long)]
    percentiles: bool,
    /// The balancer: scaletest (`scaletest balance`) or haproxy (for comparison; a fixed set
    /// of servers, so scenarios that scale servers or roll out are refused).
    #[arg(long, default_value = "scaletest", value_parser = ["scaletest", "haproxy"])]
    balancer: String,
    /// A pass/fail check on the whole run's totals (repeatable; as `load --threshold`;
    /// per phase: `thresholds = [...]` in the scenario's [phase.checks]). Any failed: exit 1.
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<report::threshold::Threshold>,
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let scenario = match demo::Scenario::builtin(&args.scenario) {
        Some(s) => s,
        None => {
            let text = std::fs::read_to_string(&args.scenario).map_err(|e| {
                Usage(format!(
                    "--scenario {}: not a built-in ({}) and not a readable file: {e}",
                    args.scenario,
                    demo::scenario::BUILTINS.join(", ")
                ))
            })?;
            demo::Scenario::parse(&text, &args.scenario).map_err(crate::exit::fault)?
        }
    };
    let scenario = match args.duration {
        Some(d) => {
            let factor = d.as_secs_f64() / scenario.planned().as_secs_f64();
            scenario.scaled(factor)
        }
        None => scenario,
    };
    let balancer = match args.balancer.as_str() {
        "haproxy" => demo::Balancer::Haproxy,
        _ => demo::Balancer::Scaletest,
    };
    demo::run::check_layout(balancer, &scenario).map_err(|e| Usage(e.to_string()))?;
    let bin = std::env::current_exe()?;
    let run_dir = demo::prepare_run_dir(&args.dir).map_err(|e| Usage(e.to_string()))?;
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let cfg = demo::Config {
        bin,
        run_dir,
        scenario,
        headless: args.headless,
        keep: args.keep,
        stop,
        drain_delay: args.drain_delay,
        balancer,
        thresholds: args.thresholds.clone(),
    };
    let mut stdout = std::io::stdout();
    let outcome = demo::run(&cfg, &mut stdout)?;
    let mut out = stdout.lock();
    let n = outcome.phases.len();
    for (i, p) in outcome.phases.iter().enumerate() {
        writeln!(
            out,
            "\n== phase {}/{n}: {} — {} responses, {} failed, {} resets, p99 {} ms: {}",
            i + 1,
            p.name,
            p.run.total.responses,
            p.failed,
            p.resets,
            p.p99_ms,
            if p.missed.is_empty() {
                "ok".to_string()
            } else {
                format!("MISSED: {}", p.missed.join("; "))
            }
        )?;
        if !p.ran.is_empty() {
            writeln!(out, "ran: {}", p.ran)?;
        }
        report::table::write_report(&p.run, args.percentiles, &mut out)?;
    }
    writeln!(
        out,
        "\nCPU per request, from /proc (all roles share this machine's cores):"
    )?;
    out.write_all(outcome.sizing.table().as_bytes())?;
    match &outcome.sustained {
        Some((phase, rate)) => writeln!(
            out,
            "highest rate sustained through {} with p99 < {} ms and no failures: {:.0} req/s ({phase})",
            cfg.balancer.name(),
            cfg.scenario.sustain_p99_ms,
            rate
        )?,
        None => writeln!(
            out,
            "highest rate sustained through {} with p99 < {} ms and no failures: none (no open-loop phase met it)",
            cfg.balancer.name(),
            cfg.scenario.sustain_p99_ms
        )?,
    }
    writeln!(out, "results: {}", outcome.results.display())?;
    writeln!(out, "report:  {}", outcome.report.display())?;
    report::threshold::write_verdicts(&outcome.verdicts, &mut out)?;
    let mut failed: Vec<&str> = outcome
        .phases
        .iter()
        .filter(|p| !p.missed.is_empty())
        .map(|p| p.name.as_str())
        .collect();
    if !report::threshold::all_pass(&outcome.verdicts) {
        failed.push("the whole run");
    }
    if outcome.interrupted {
        writeln!(out, "interrupted")?;
        return Ok(ExitCode::from(130));
    }
    if failed.is_empty() {
        writeln!(out, "every phase met its checks")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "checks missed in: {}", failed.join(", "))?;
        Ok(ExitCode::from(1))
    }
}

/// The first SIGINT/SIGTERM ends the run in order; a second one exits at once (the children
/// get SIGKILL from the kernel: they asked for it when their parent dies).
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = rt.block_on(async { super::Signals::new() })?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async {
                signals.recv().await;
                stop.store(true, Ordering::Relaxed);
                signals.recv().await;
                std::process::exit(130);
            })
        })?;
    Ok(())
}
