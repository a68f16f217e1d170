//! `scaletest report FILE...`: render saved runs again; several files are merged as one run.

use crate::Usage;
use report::RunFile;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `scaletest report`.
#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  scaletest load http://127.0.0.1:8080/ -d 10s --json run.json && scaletest report run.json\n  scaletest report bot1.json bot2.json --percentiles"
)]
pub struct Args {
    /// Run files written by `scaletest load --json`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also print the full percentile spectrum (p50 … p99.999).
    #[arg(long)]
    percentiles: bool,
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let runs = args
        .files
        .iter()
        .map(|p| RunFile::read(p).map_err(|e| Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let run = RunFile::merge(&runs).expect("clap requires at least one file");
    let mut out = std::io::stdout().lock();
    report::table::write_report(&run, args.percentiles, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
