//! `scaletest api run WORKLOAD`: a workload file (or a built-in one) → checked →
//! resources found → jobs run → the report (jobs, calls, pod startup, the server's view).

use super::api::{calls_progress, finish, server_side, ClusterArgs};
use super::stop_on_ctrl_c;
use crate::exit::{fault, Usage};
use kapi::output::{ApiInfo, ApiRun};
use kapi::server_metrics::Scraper;
use kapi::stats::Recorder;
use kapi::workload::{run, spec, EXAMPLES};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

const EXAMPLES_HELP: &str = "Built-in workloads (or give a file):
  deployments   N Deployments × M replicas + Services in K namespaces, waited for Ready
                (vars: namespaces 5, deployments 2, replicas 3, qps 20)
  density       ClusterLoader2's density: pods_per_node pause pods per node, waited for
                Running, then deleted (vars: nodes 10, pods_per_node 30, qps 20)
  configmaps    seed 004's ConfigMap churn as a job (vars: namespaces 10, configmaps 100,
                qps 50, percent 20, interval 10s, cycles 3)

Examples:
  scaletest api run deployments --set namespaces=5 --set replicas=3 --cleanup
  scaletest api run density --set nodes=100 --slo --json density.json
  scaletest api run my-workload.yaml --run-id nightly --json run.json
  scaletest api run my-workload.yaml --run-id nightly --cleanup-only   what it left behind
  scaletest api run --print deployments > my-workload.yaml      start from an example";

/// Arguments of `scaletest api run`.
#[derive(clap::Args)]
#[command(after_help = EXAMPLES_HELP)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// A workload file (YAML), or a built-in workload's name.
    #[arg(value_name = "WORKLOAD")]
    workload: String,
    /// Set a variable of the workload (`vars:` in the file), as KEY=VALUE; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    set: Vec<(String, String)>,
    /// The run's id, in the `scaletest.dev/run` label of everything it makes [default: random].
    #[arg(long)]
    run_id: Option<String>,
    /// After the jobs (also after Ctrl-C or a failed job), delete the run's namespaces (and
    /// everything in them) and its objects of the workload's kinds wherever they are, and
    /// wait until the namespaces are gone.
    #[arg(long)]
    cleanup: bool,
    /// Run no job: only remove what run --run-id made (after a crash, or a run without
    /// --cleanup): its namespaces and its objects of the workload's kinds.
    #[arg(long, requires = "run_id", conflicts_with = "cleanup")]
    cleanup_only: bool,
    /// Check p99 latencies against the Kubernetes API-call SLOs (as `api churn --slo`);
    /// exit 1 if one fails.
    #[arg(long)]
    slo: bool,
    /// Print the workload file (a built-in one's text) and exit.
    #[arg(long)]
    print: bool,
}

fn parse_set(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: give KEY=VALUE")),
    }
}

impl RunArgs {
    pub(crate) fn threads(&self) -> Option<u64> {
        self.cluster.threads
    }

    /// The workload as given (a built-in name or a file), the `--set`s, `--cleanup`.
    pub(crate) fn workload_and_set(&self) -> (String, Vec<(String, String)>, bool) {
        (self.workload.clone(), self.set.clone(), self.cleanup)
    }
}

/// The workload's name and text: a built-in one, or a file (for `k8s api`).
pub(crate) fn read_workload(w: &str) -> Result<(String, String), Usage> {
    workload_text(w)
}

/// Whether `w` names a built-in workload.
pub(crate) fn is_built_in(w: &str) -> bool {
    EXAMPLES.iter().any(|(n, _, _)| *n == w)
}

/// The workload's name and text: a built-in one, or a file.
fn workload_text(w: &str) -> Result<(String, String), Usage> {
    if let Some((name, _, text)) = EXAMPLES.iter().find(|(n, _, _)| *n == w) {
        return Ok((name.to_string(), text.to_string()));
    }
    std::fs::read_to_string(w)
        .map(|t| (w.to_string(), t))
        .map_err(|e| {
            let names: Vec<&str> = EXAMPLES.iter().map(|(n, _, _)| *n).collect();
            Usage(format!(
                "{w}: {e} (built-in workloads: {})",
                names.join(", ")
            ))
        })
}

pub(crate) async fn main(a: RunArgs) -> anyhow::Result<ExitCode> {
    let (name, text) = workload_text(&a.workload)?;
    if a.print {
        print!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let workload = spec::parse(&name, &text, &a.set).map_err(Usage)?;
    let run_id = match &a.run_id {
        Some(id) if !kapi::spec::valid_run_id(id) => {
            return Err(Usage(format!(
                "--run-id {id:?}: 1-40 lowercase letters, digits and '-'"
            ))
            .into())
        }
        Some(id) => id.clone(),
        None => kapi::spec::random_run_id(),
    };
    let mut namespaces = Vec::new();
    for job in &workload.jobs {
        if let spec::JobKind::Create { namespaces: n, .. } = job.kind {
            namespaces.extend(run::namespace_names(&run_id, &job.name, n).map_err(fault)?);
        }
    }
    let (client, default_ns) = a.cluster.connect(Some(a.cluster.timeout), false).await?;
    let targets = run::resolve_all(&client, &workload).await.map_err(fault)?;
    if a.cleanup_only {
        let c = run::cleanup(
            &client,
            &run_id,
            &targets,
            a.cluster.timeout.max(Duration::from_secs(120)),
        )
        .await
        .map_err(fault)?;
        println!(
            "removed {} namespace(s) and {} object(s) of run {run_id}",
            c.namespaces, c.objects
        );
        return Ok(ExitCode::SUCCESS);
    }
    let scraper = Scraper::start(client.clone(), a.cluster.scrape_interval).await;
    let stop = stop_on_ctrl_c();
    let started_unix = st_http::stamp::now_unix();
    let started = std::time::Instant::now();
    let rec = Arc::new(Recorder::default());
    let progress = calls_progress(None, rec.clone());
    let cfg = run::Config {
        run_id: run_id.clone(),
        default_ns,
    };
    let out = run::run(&client, &cfg, &workload, &targets, &rec, stop).await;
    progress.finish();
    let info = ApiInfo {
        command: "run".into(),
        resource: name,
        run_id: Some(run_id.clone()),
        namespaces,
        ..ApiInfo::default()
    };
    let mut r = ApiRun::new(info, started_unix);
    r.elapsed_s = started.elapsed().as_secs_f64();
    r.interrupted = out.interrupted;
    let calls_cut = r.take_calls(&rec);
    r.seconds_cut = kapi::series::first_cut([calls_cut, out.startup_cut]);
    r.jobs = out.jobs;
    r.pods = Some(out.startup);
    r.server = Some(server_side(scraper).await);
    r.check_slo();
    if a.cleanup {
        match run::cleanup(&client, &run_id, &targets, Duration::from_secs(120)).await {
            Ok(c) => eprintln!(
                "scaletest: removed {} namespace(s) and {} object(s) of run {run_id}",
                c.namespaces, c.objects
            ),
            Err(e) => eprintln!(
                "scaletest: cleanup of run {run_id}: {e} (again: `scaletest api run {} --cleanup-only --run-id {run_id}`)",
                a.workload
            ),
        }
    }
    let code = finish(&r, a.cluster.json.as_ref(), a.slo)?;
    if let Some(j) = r.jobs.iter().find(|j| !j.ok) {
        eprintln!(
            "scaletest: job {} did not finish as asked{}",
            j.name,
            j.waited
                .as_ref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::from(1));
    }
    if !a.cleanup && !r.jobs.is_empty() {
        eprintln!(
            "scaletest: left what run {run_id} made; remove it with `scaletest api run {} \
             --cleanup-only --run-id {run_id}`",
            a.workload
        );
    }
    Ok(code)
}
