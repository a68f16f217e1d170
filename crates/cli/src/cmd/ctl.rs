//! `scaletest ctl`: one command to a running `scaletest demo`, found through its run
//! directory (`demo::ctl` has the file channel); prints the demo's reply.

use crate::Usage;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const EXAMPLES: &str = "Commands:
  scale servers=N [bots=M]   add or remove replicas (servers drain through their readiness)
  rollout VERSION            replace every server not on VERSION, one at a time
  rate N                     total req/s over the bots (open loop)
  connections N              closed loop, N connections in total
  status                     what runs

Examples:
  scaletest ctl scale servers=8
  scaletest ctl scale bots=6
  scaletest ctl rollout v3
  scaletest ctl rate 50000
  scaletest ctl --dir /tmp/demo status";

/// Arguments of `scaletest ctl`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The demo's directory (its --dir, or one run directory in it).
    #[arg(long, default_value = "scaletest-demo")]
    dir: PathBuf,
    /// Longest wait for the demo's reply (a rollout takes a few seconds per server).
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    timeout: Duration,
    /// The command and its arguments.
    #[arg(required = true, num_args = 1..)]
    command: Vec<String>,
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let cmd = demo::ctl::Command::parse(&args.command).map_err(Usage)?;
    let run = demo::ctl::resolve(&args.dir);
    let reply = demo::ctl::send(&run, &cmd, args.timeout).map_err(crate::exit::fault)?;
    print!("{reply}");
    if !reply.ends_with('\n') {
        println!();
    }
    Ok(if reply.starts_with("failed") {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
