//! `scaletest report FILE...`: render saved runs again; several files are merged as one run.
//! `--html` also writes the report as one self-contained page; `--compare A B` sets two runs
//! side by side. Load runs go through `report`; control-plane runs (`api`, `nodes`) through
//! their own records and `kapi::view`.

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
  scaletest report --compare before.json after.json --html compare.html
  scaletest report --compare churn-1.28.json churn-1.29.json
  scaletest report nodes-shard-0.json nodes-shard-1.json --html nodes.html")]
pub struct Args {
    /// Run files written by `--json` of `scaletest load`, `aggregate`, `api churn|watch` or
    /// `nodes`; files of one kind.
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
    if let Some(k) = kinds.iter().find(|k| **k != kinds[0]) {
        return Err(Usage(format!(
            "cannot read `{}` and `{}` run files together: give files of one kind",
            kinds[0].name(),
            k.name()
        ))
        .into());
    }
    match kinds[0] {
        Kind::Load => {}
        Kind::Api => {
            let runs = texts
                .iter()
                .map(|(n, t)| kapi::output::ApiRun::from_json(n, t).map_err(fault))
                .collect::<Result<Vec<_>, _>>()?;
            mergeable(&args, runs.iter().map(|r| r.started_unix))?;
            let merged = kapi::output::ApiRun::merge(&runs).expect("clap requires a file");
            let text = |r: &kapi::output::ApiRun| kapi::output::render(r, !r.slo.is_empty());
            return control_plane(&args, &texts, &runs, &merged, |r| r.view(), text);
        }
        Kind::Nodes => {
            let runs = texts
                .iter()
                .map(|(n, t)| nodes::report::NodesRun::from_json(n, t).map_err(fault))
                .collect::<Result<Vec<_>, _>>()?;
            mergeable(&args, runs.iter().map(|r| r.started_unix))?;
            let merged = nodes::report::NodesRun::merge(&runs).expect("clap requires a file");
            return control_plane(
                &args,
                &texts,
                &runs,
                &merged,
                |r| r.view(),
                nodes::report::render,
            );
        }
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

/// Control-plane runs to be merged line up by their starts: refused when they cannot.
fn mergeable(args: &Args, starts: impl Iterator<Item = f64>) -> Result<(), Usage> {
    let starts: Vec<f64> = starts.collect();
    if args.compare || starts.len() < 2 {
        return Ok(());
    }
    match kapi::series::starts_apart(&starts) {
        Some(why) => Err(Usage(format!("cannot merge these run files: {why}"))),
        None => Ok(()),
    }
}

/// Control-plane runs: two side by side (`--compare`), or merged (one is shown as it is);
/// the page first, as for load runs.
fn control_plane<R>(
    args: &Args,
    texts: &[(String, String)],
    runs: &[R],
    merged: &R,
    view: impl for<'a> Fn(&'a R) -> kapi::view::View<'a>,
    text: impl Fn(&R) -> String,
) -> anyhow::Result<ExitCode> {
    let out = if args.compare {
        let names = [texts[0].0.as_str(), texts[1].0.as_str()];
        let (a, b) = (view(&runs[0]), view(&runs[1]));
        if let Some(path) = &args.html {
            write_html(path, &kapi::view::compare_html(&a, &b, names))?;
        }
        kapi::view::compare(&a, &b, names)
    } else {
        if let Some(path) = &args.html {
            write_html(path, &kapi::view::html(&view(merged)))?;
        }
        text(merged)
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn write_html(path: &Path, page: &str) -> anyhow::Result<()> {
    report::write_bytes_atomic(page.as_bytes(), path)
        .with_context(|| format!("cannot write {}", path.display()))
}
