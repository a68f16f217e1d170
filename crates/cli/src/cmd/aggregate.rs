//! `scaletest aggregate`: flags → `fleet::agg::Config` → `fleet::agg::start`; the end of the
//! run (--run-for, Ctrl-C, `POST /api/finish`) prints the tables and where the results are.

use super::parse_duration;
use crate::exit::{fault, Usage};
use fleet::state::{LoadRequest, Plan};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str =
    "The load flags are `scaletest load`'s: the rate (--rate) is the total over all bots, split
evenly over the live ones; -c without --rate is a closed loop with that many connections per bot.
-d is the same as --run-for. A rate in stages (--stages, or --rate steps:/ramp:) is one schedule
for the fleet: it starts on the first whole second at least 2 s after the first bot is live, a
bot joining later joins it where it is, and the run lasts as long as the stages (--run-for: that
long from the schedule's first start, the last rate held; steps have no end: give --run-for).

Examples:
  scaletest aggregate http://127.0.0.1:8000/ --rate 20000 --run-for 60s --out results
  scaletest aggregate http://127.0.0.1:8000/ --per-bot-rate 1000      seed 000: 1,000 req/s per bot
  scaletest aggregate http://127.0.0.1:8000/ --stages 30s:10000,5m:10000,30s:0
  scaletest aggregate --token-file token                                idle until PUT /api/load
  scaletest bot --aggregator http://127.0.0.1:8089 --token-file results/token
  scaletest aggregate http://10.0.0.9:8000/ --rate 20000 --bind 0.0.0.0:8089 --tls-self-signed --tls-name agg.example
  scaletest bot --aggregator https://agg.example:8089 --token-file results/token --cacert results/tls/cert.pem";

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
    /// Serve HTTPS with a self-signed certificate made once in OUT/tls/ (cert.pem: give it
    /// to bots as --cacert) for localhost, the --bind address and --tls-name.
    #[arg(long, conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// A host name or IP the self-signed certificate names too (repeatable): how bots reach
    /// this aggregator [default: this host's name].
    #[arg(long, value_name = "NAME", requires = "tls_self_signed")]
    tls_name: Vec<String>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Reads (the UI, the read APIs, /metrics) need no token even off loopback.
    #[arg(long)]
    public_read: bool,
}

/// The certificate to serve, if any, and the CA file bots should be given.
fn tls(args: &Args) -> anyhow::Result<(Option<rustls::ServerConfig>, Option<PathBuf>)> {
    let (cert, key, ca) = if args.tls_self_signed {
        let mut names = args.tls_name.clone();
        if names.is_empty() {
            names.push(fleet::bot::host_name());
        }
        if !args.bind.ip().is_unspecified() {
            names.push(args.bind.ip().to_string());
        }
        let s = fleet::agg::cert::self_signed(&args.out, &names).map_err(Usage)?;
        (s.cert.clone(), s.key, Some(s.cert))
    } else if let (Some(c), Some(k)) = (&args.tls_cert, &args.tls_key) {
        (c.clone(), k.clone(), None)
    } else {
        return Ok((None, None));
    };
    let cfg = st_http::tls::server_config_from_files(&cert, &key)
        .map_err(|e| Usage(format!("--tls-cert/--tls-key: {e}")))?;
    Ok((Some(cfg), ca))
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let a = &args.load;
    let token = super::token_from(&args.token, &args.token_file)?
        .unwrap_or_else(st_http::stamp::random_hex);
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
    // A ramp is walked over --run-for: as stages, bots need not know the run's length.
    let rate = spec
        .rate
        .clone()
        .map(|s| {
            s.without_ramp(run_for).ok_or_else(|| {
                Usage(format!(
                    "--rate {}: a ramp needs --run-for (or -d) to ramp over; or give stages",
                    s.text()
                ))
            })
        })
        .transpose()?
        // Stages with a --run-for: their last rate holds while the run lasts, as in `load`.
        .map(|s| run_for.map_or(s.clone(), |d| s.held_for(d)));
    // The flags as the load request `PUT /api/load` takes: one rule, one set of words. With
    // no target the aggregator idles, or picks up the unfinished run in --out with its own
    // load: a rate flag then has nothing to apply to, as before.
    let rate = rate.filter(|_| has_target);
    let request = LoadRequest {
        rate: rate.clone(),
        per_bot_rate: args.per_bot_rate.filter(|_| has_target),
        connections_per_bot: (has_target && rate.is_none() && args.per_bot_rate.is_none())
            .then_some(spec.connections),
        idle: !has_target,
        spec: None,
    };
    let plan = request
        .plan(&Plan::Idle)
        .map_err(|e| Usage(format!("{e} ({})", FLAGS)))?;
    fleet::state::check_plan(&spec, &plan).map_err(super::load::spec_usage)?;
    let (tls, cacert) = tls(&args)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
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
        tls,
        public_read: args.public_read,
    };
    let pprof = a.pprof.start()?;
    let running = fleet::agg::start(cfg).map_err(fault)?;
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
                "listening on {scheme}://{} ({})",
                running.addr,
                super::pprof_on(p)
            )?,
            None => writeln!(out, "listening on {scheme}://{}", running.addr)?,
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
        if let Some(ca) = &cacert {
            writeln!(out, "tls: certificate in {}", ca.display())?;
        }
        writeln!(
            out,
            "bots: scaletest bot --aggregator {scheme}://{} --token-file {}{}",
            running.addr,
            args.token_file.as_deref().unwrap_or(&token_path).display(),
            cacert
                .as_ref()
                .map_or(String::new(), |c| format!(" --cacert {}", c.display()))
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
