//! `scaletest aggregate`: flags → `fleet::agg::Config` → `fleet::agg::start`; the end of the
//! run (--run-for, Ctrl-C, `POST /api/finish`) prints the tables and where the results are.

use super::parse_duration;
use crate::Usage;
use fleet::state::{LoadRequest, Plan};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str =
    "The load flags are `scaletest load`'s: the rate (--rate) is the total over all bots, split
evenly over the live ones; -c without --rate is a closed loop with that many connections per bot.
-d is the same as --run-for.

Examples:
  scaletest aggregate http://127.0.0.1:8000/ --rate 20000 --run-for 60s --out results
  scaletest aggregate http://127.0.0.1:8000/ --per-bot-rate 1000      seed 000: 1,000 req/s per bot
  scaletest aggregate --token-file token                                idle until PUT /api/load
  scaletest bot --aggregator http://127.0.0.1:8089 --token-file results/token";

/// The load request's fields as this command's flags, for its errors.
const FLAGS: &str = "rate: --rate, per_bot_rate: --per-bot-rate, connections_per_bot: -c, \
                     idle: no target URL";

/// Arguments of `scaletest aggregate`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
#[group(id = "aggregate_args")]
pub struct Args {
    #[command(flatten)]
    load: super::load::Args,
    /// Open loop: requests/s for every bot (instead of a total --rate).
    #[arg(long)]
    per_bot_rate: Option<f64>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    bind: SocketAddr,
    /// Bearer token for writes and for bots [default: a new one, written to OUT/token].
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the bearer token from this file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Run directory: the run as it goes, results.json and report.html at the end. An
    /// unfinished run in it is picked up.
    #[arg(long, default_value = "scaletest-results")]
    out: PathBuf,
    /// End the run after this long [default: when told (Ctrl-C, POST /api/finish)].
    #[arg(long, value_parser = parse_duration)]
    run_for: Option<Duration>,
    /// Most bots registered at once.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_bots: u64,
    /// A bot silent this long is stale (its share of a total rate moves to the others).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    stale_after: Duration,
    /// A bot silent this long is gone.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    gone_after: Duration,
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let a = &args.load;
    let token =
        super::token_from(&args.token, &args.token_file)?.unwrap_or_else(fleet::agg::random_hex);
    if a.has_requests() {
        return Err(Usage(
            "-n does not apply to aggregate: a run ends with --run-for, Ctrl-C or POST /api/finish"
                .into(),
        )
        .into());
    }
    let run_for = args.run_for.or(a.duration());
    let mut spec = super::load::spec(a)?;
    spec.duration_s = None;
    spec.requests = None;
    let has_target = spec.url.is_some() || !spec.targets.is_empty();
    let rate = spec
        .rate_shape()
        .map_err(|e| Usage(e.to_string()))?
        .map(|s| s.rate_at(0.0, 1.0));
    // The flags as the load request `PUT /api/load` takes: one rule, one set of words. With
    // no target the aggregator idles, or picks up the unfinished run in --out with its own
    // load: a rate flag then has nothing to apply to, as before.
    let rate = rate.filter(|_| has_target);
    let request = LoadRequest {
        rate,
        per_bot_rate: args.per_bot_rate.filter(|_| has_target),
        connections_per_bot: (has_target && rate.is_none() && args.per_bot_rate.is_none())
            .then_some(spec.connections),
        idle: !has_target,
        spec: None,
    };
    let plan = request
        .plan(Plan::Idle)
        .map_err(|e| Usage(format!("{e} ({})", FLAGS)))?;
    fleet::state::check_plan(&spec, plan).map_err(|e| Usage(e.to_string()))?;
    let cfg = fleet::agg::Config {
        bind: args.bind,
        token: token.clone(),
        out: args.out.clone(),
        spec,
        plan,
        run_for,
        state: fleet::state::Config {
            max_bots: args.max_bots as usize,
            stale_after: args.stale_after.as_secs_f64(),
            gone_after: args
                .gone_after
                .as_secs_f64()
                .max(args.stale_after.as_secs_f64()),
            ..Default::default()
        },
        thresholds: a.thresholds().to_vec(),
        abort_on_fail: a.abort_on_fail(),
    };
    let pprof = a.pprof.start()?;
    let running = fleet::agg::start(cfg).map_err(|e| match e {
        fleet::agg::AggError::Start(_) => anyhow::Error::from(e),
        _ => Usage(e.to_string()).into(),
    })?;
    let token_path = args.out.join("token");
    if args.token.is_none() && args.token_file.is_none() {
        write_token(&token_path, &token)?;
    }
    // SIGTERM handled before the address is announced: a supervisor may send it at once.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut signals = rt.block_on(async { super::Signals::new() })?;
    {
        let mut out = std::io::stdout().lock();
        match &pprof {
            Some(p) => writeln!(
                out,
                "listening on http://{} ({})",
                running.addr,
                super::pprof_on(p)
            )?,
            None => writeln!(out, "listening on http://{}", running.addr)?,
        }
        if running.resumed {
            writeln!(
                out,
                "picked up the unfinished run in {}",
                args.out.display()
            )?;
        }
        if args.token.is_none() && args.token_file.is_none() {
            writeln!(out, "token: {token} (in {})", token_path.display())?;
        }
        writeln!(
            out,
            "bots: scaletest bot --aggregator http://{} --token-file {}",
            running.addr,
            args.token_file.as_deref().unwrap_or(&token_path).display()
        )?;
        out.flush()?;
    }
    let finisher = running.finisher();
    let outcome = rt.block_on(async {
        tokio::spawn(async move {
            signals.recv().await;
            finisher.finish();
            signals.recv().await;
            std::process::exit(130);
        });
        anyhow::Ok(tokio::task::spawn_blocking(move || running.wait()).await?)
    })?;
    let mut out = std::io::stdout().lock();
    report::table::write_report(&outcome.run, a.percentiles(), &mut out)?;
    report::threshold::write_verdicts(&outcome.run.verdicts, &mut out)?;
    writeln!(out, "results: {}", outcome.results.display())?;
    writeln!(out, "report:  {}", outcome.report.display())?;
    out.flush()?;
    if let Some(e) = outcome.write_error {
        anyhow::bail!("cannot write the results: {e}");
    }
    // No answers is not a failure here (an idle aggregator); a failed threshold is.
    Ok(if report::threshold::all_pass(&outcome.run.verdicts) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn write_token(path: &std::path::Path, token: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Usage(format!("cannot write {}: {e}", path.display())))?;
    writeln!(f, "{token}")?;
    Ok(())
}
