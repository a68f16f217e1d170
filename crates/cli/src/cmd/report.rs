//! `scaletest report FILE...`: render saved runs again; several files are merged as one run.
//! `--html` also writes the report as one self-contained page; `--compare A B` sets two runs
//! side by side.

use crate::exit::{fault, Usage};
use anyhow::Context;
use report::{Kind, RunFile};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `scaletest report`.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  scaletest load http://127.0.0.1:8080/ -d 10s --json run.json && scaletest report run.json
  scaletest report bot1.json bot2.json --percentiles
  scaletest report run.json --html run.html
  scaletest report --compare before.json after.json --html compare.html")]
pub struct Args {
    /// Run files written by `scaletest load --json` or `scaletest api ... --json`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Also print the full percentile spectrum (p50 … p99.999).
    #[arg(long)]
    percentiles: bool,
    /// Also write the report as one self-contained HTML page (charts, events, percentile
    /// spectrum, tables; works offline).
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
    /// Compare exactly two run files: figures side by side with the change from the first to
    /// the second (with --html: their series overlaid).
    #[arg(long)]
    compare: bool,
}

/// A run file's kind (`report::Kind::of`: its `kind` field, or its shape if older).
fn kind(name: &str, text: &str) -> Result<Kind, Usage> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        Usage(report::runfile::RunFileError::Parse(name.into(), e.to_string()).to_string())
    })?;
    Kind::of(&v)
        .map_err(|why| Usage(report::runfile::RunFileError::Parse(name.into(), why).to_string()))
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
    if args.compare && texts.len() != 2 {
        return Err(Usage(format!(
            "--compare takes exactly two run files, got {}",
            texts.len()
        ))
        .into());
    }
    let kinds = texts
        .iter()
        .map(|(n, t)| kind(n, t))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some((n, _)) = texts.iter().zip(&kinds).find(|(_, k)| **k == Kind::Nodes) {
        return Err(Usage(format!(
            "{}: a `nodes` run file; report reads `load` and `api` ones",
            n.0
        ))
        .into());
    }
    let api = kinds.iter().filter(|k| **k == Kind::Api).count();
    if api > 0 && (args.compare || args.html.is_some()) {
        return Err(
            Usage("--html and --compare read `load` run files, not `api` ones".into()).into(),
        );
    }
    if api > 0 {
        if api < texts.len() {
            return Err(Usage("cannot merge `load` run files with `api` run files".into()).into());
        }
        let runs = texts
            .iter()
            .map(|(n, t)| kapi::output::ApiRun::from_json(n, t).map_err(fault))
            .collect::<Result<Vec<_>, _>>()?;
        let run = kapi::output::ApiRun::merge(&runs).expect("clap requires at least one file");
        let mut out = std::io::stdout().lock();
        out.write_all(kapi::output::render(&run, !run.slo.is_empty()).as_bytes())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let runs = texts
        .iter()
        .map(|(n, t)| RunFile::from_json(n, t).map_err(fault))
        .collect::<Result<Vec<_>, _>>()?;
    if args.compare {
        let names = [texts[0].0.as_str(), texts[1].0.as_str()];
        if let Some(path) = &args.html {
            write_html(path, &report::compare::html(&runs[0], &runs[1], names))?;
        }
        let mut out = std::io::stdout().lock();
        out.write_all(report::compare::table(&runs[0], &runs[1], names).as_bytes())?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    // One file is shown as it is: merging drops an aggregator's per-bot extras (events, bots).
    let run = match <[RunFile; 1]>::try_from(runs) {
        Ok([run]) => run,
        Err(runs) => RunFile::merge(&runs).expect("clap requires at least one file"),
    };
    // The page first, as `load` writes its JSON first: it must survive a closed stdout.
    if let Some(path) = &args.html {
        write_html(path, &report::html::render(&run))?;
    }
    let mut out = std::io::stdout().lock();
    report::table::write_report(&run, args.percentiles, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write_html(path: &Path, page: &str) -> anyhow::Result<()> {
    report::write_bytes_atomic(page.as_bytes(), path)
        .with_context(|| format!("cannot write {}", path.display()))
}
