//! `scaletest bot`: flags → `fleet::bot::Config` → `fleet::bot::run` until SIGTERM (drain,
//! last push, deregister, exit 0) or, with --exit-when-finished, the end of the run.

use crate::Usage;
use std::path::PathBuf;
use std::process::ExitCode;

const EXAMPLES: &str = "Examples:
  scaletest bot --aggregator http://127.0.0.1:8089 --token-file scaletest-results/token
  scaletest bot --aggregator http://10.0.0.5:8089 --token-file /etc/scaletest/token --name bot-7";

/// Arguments of `scaletest bot`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The aggregator, http://HOST:PORT or https://HOST:PORT.
    #[arg(long)]
    aggregator: String,
    /// Trust the aggregator's certificate with this PEM CA file (an https:// aggregator;
    /// without it, the public roots). A certificate that does not verify: exit 1.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,
    /// The aggregator's bearer token.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// Read the token from this file.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Name in the bots table [default: HOST-PID].
    #[arg(long)]
    name: Option<String>,
    /// Worker threads for the load [default: the CPUs this process may use].
    #[arg(short = 't', long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    threads: Option<u64>,
    /// Exit when the aggregator ends the run (else stay idle for the next one).
    #[arg(long)]
    exit_when_finished: bool,
    /// Seconds of measurements kept while the aggregator is unreachable (oldest dropped first).
    #[arg(long, default_value_t = fleet::bot::OUTBOX as u64, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    buffer: u64,
    #[command(flatten)]
    pprof: super::Pprof,
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let token = super::token_from(&args.token, &args.token_file)?
        .ok_or_else(|| Usage("give --token or --token-file".into()))?;
    let host = fleet::bot::host_name();
    let cfg = fleet::bot::Config {
        aggregator: args.aggregator.clone(),
        cacert: args.cacert.clone(),
        token,
        name: args
            .name
            .clone()
            .unwrap_or_else(|| format!("{host}-{}", std::process::id())),
        threads: args.threads,
        exit_when_finished: args.exit_when_finished,
        outbox: args.buffer as usize,
        warn: |m| eprintln!("scaletest bot: {m}"),
    };
    let pprof = args.pprof.start()?;
    if let Some(p) = &pprof {
        println!("{}", super::pprof_on(p));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let stop = load::Shutdown::new();
    let outcome = local.block_on(&rt, async {
        let mut signals = super::Signals::new()?;
        let s = stop.clone();
        tokio::task::spawn_local(async move {
            signals.recv().await;
            s.finish();
            signals.recv().await;
            s.trigger();
        });
        fleet::bot::run(cfg, stop.clone())
            .await
            .map_err(crate::exit::fault)
    })?;
    if outcome.undelivered > 0 || outcome.dropped > 0 {
        eprintln!(
            "scaletest bot: {} seconds undelivered, {} dropped while the aggregator was unreachable",
            outcome.undelivered, outcome.dropped
        );
    }
    Ok(ExitCode::SUCCESS)
}
