//! `scaletest`: one binary, one subcommand per capability. This file only parses, dispatches
//! and turns the outcome into an exit code: 0 success (and a closed pipe), 1 a failed run,
//! 2 bad usage or configuration.

// The binary is where output goes (see clippy.toml).
#![allow(clippy::disallowed_macros)]

mod cmd;
mod exit;
mod metrics;
mod progress;

pub use exit::Usage;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "scaletest",
    version,
    about = "Scale-test HTTP services and Kubernetes control planes",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate HTTP load (closed loop, or open loop with --rate) and report latency and throughput.
    Load(Box<cmd::load::Cmd>),
    /// Print the report of one or more JSON run files (several are merged, e.g. from many loadbots).
    Report(cmd::report::Args),
    /// Serve HTTP as a load target: fixed and parameterised endpoints, metrics, graceful drain.
    Serve(Box<cmd::serve::Args>),
    /// Balance HTTP over backends (L7): health checks, safe retries, drain, admin API.
    Balance(Box<cmd::balance::Args>),
    /// Load the Kubernetes API: object churn (open or closed loop) and informer timing.
    Api(cmd::api::Args),
    /// Run a loadbot: take load from an aggregator, push per-second histograms to it.
    Bot(cmd::bot::Args),
    /// Aggregate loadbots: merge their histograms live, split the load, web UI, reports.
    Aggregate(Box<cmd::aggregate::Args>),
    /// Run the whole data-plane demo on loopback: servers, balancer, bots, aggregator and UI.
    Demo(cmd::demo::Args),
    /// Act on a running demo: scale, rollout, rate, status.
    Ctl(cmd::ctl::Args),
    /// Run hollow nodes: simulated kubelets and kube-proxies, and pod startup latency.
    Nodes(Box<cmd::nodes::Args>),
    /// The demo on a Kubernetes cluster: servers, loadbots and aggregator as pods.
    K8s(cmd::k8s::Args),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::from(if e.kind() == DisplayHelpOnMissingArgumentOrSubcommand {
                    2
                } else {
                    0
                });
            }
            // One line: clap's first line without its "error: " prefix.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("scaletest: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Load(args) => cmd::load::main(*args),
        Command::Report(args) => cmd::report::main(args),
        Command::Serve(args) => cmd::serve::main(*args),
        Command::Balance(args) => cmd::balance::main(*args),
        Command::Api(args) => cmd::api::main(args),
        Command::Bot(args) => cmd::bot::main(args),
        Command::Aggregate(args) => cmd::aggregate::main(*args),
        Command::Demo(args) => cmd::demo::main(args),
        Command::Ctl(args) => cmd::ctl::main(args),
        Command::Nodes(args) => cmd::nodes::main(*args),
        Command::K8s(args) => cmd::k8s::main(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            // The whole cause chain on one line.
            eprintln!("scaletest: {e:#}");
            ExitCode::from(if e.downcast_ref::<Usage>().is_some() {
                2
            } else {
                1
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
