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
    /// Run files written by `scaletest load --json` or `scaletest api ... --json`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also print the full percentile spectrum (p50 … p99.999).
    #[arg(long)]
    percentiles: bool,
}

/// An `api churn` / `api watch` run file (rather than a `load` one)?
fn is_api_run(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|v| v.get("calls").is_some() && v.get("total").is_none())
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let texts = args
        .files
        .iter()
        .map(|p| {
            let name = p.display().to_string();
            std::fs::read_to_string(p)
                .map(|t| (name.clone(), t))
                .map_err(|e| {
                    Usage(report::runfile::RunFileError::Io(name, e.to_string()).to_string())
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let api = texts.iter().filter(|(_, t)| is_api_run(t)).count();
    if api > 0 {
        if api < texts.len() {
            return Err(Usage("cannot merge `load` run files with `api` run files".into()).into());
        }
        let runs = texts
            .iter()
            .map(|(n, t)| kapi::output::ApiRun::from_json(n, t).map_err(Usage))
            .collect::<Result<Vec<_>, _>>()?;
        let run = kapi::output::ApiRun::merge(&runs).expect("clap requires at least one file");
        let mut out = std::io::stdout().lock();
        out.write_all(kapi::output::render(&run, !run.slo.is_empty()).as_bytes())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let runs = texts
        .iter()
        .map(|(n, t)| RunFile::from_json(n, t).map_err(|e| Usage(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let run = RunFile::merge(&runs).expect("clap requires at least one file");
    let mut out = std::io::stdout().lock();
    report::table::write_report(&run, args.percentiles, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
