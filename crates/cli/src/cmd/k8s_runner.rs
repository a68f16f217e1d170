//! `scaletest k8s api -- ARGS` and `scaletest k8s nodes up|down`: control-plane runners as
//! pods (`k8s::runner`), each with a ServiceAccount and a ClusterRole of exactly the verbs its
//! command uses; `--render` prints the manifests instead.

use super::api::{runner_needs, RunnerNeeds};
use super::parse_duration;
use crate::exit::{fault, Usage};
use k8s::runner::{self, Rules, Runner, What};
use kapi::output::ApiRun;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the runner goes.
#[derive(clap::Args)]
pub(crate) struct Place {
    /// Kubeconfig file [default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long)]
    context: Option<String>,
    /// The runner's id (a DNS label), in its names and labels [default: api, or hollow].
    #[arg(long)]
    run: Option<String>,
    /// Its namespace [default: scaletest-RUN].
    #[arg(long)]
    namespace: Option<String>,
    /// The image holding the scaletest binary [default: scaletest:VERSION].
    #[arg(long)]
    image: Option<String>,
    /// imagePullPolicy.
    #[arg(long, default_value = "IfNotPresent")]
    pull_policy: String,
    /// A Secret in the runner's namespace whose key `kubeconfig` names the cluster to load
    /// [default: the cluster the pods run in, through their ServiceAccount].
    #[arg(long, value_name = "SECRET")]
    kubeconfig_secret: Option<String>,
    /// Longest wait: for the Job's pods [default: the command's -d and 10 minutes, or 30
    /// minutes], or for the Nodes Ready [default: 10 minutes].
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Print the manifests (YAML) and exit.
    #[arg(long)]
    render: bool,
    /// With --kubeconfig-secret: the same kubeconfig here, to wait for the Nodes in that
    /// cluster (`nodes up`) and remove them (`nodes down`) [default: neither is done there].
    #[arg(long, value_name = "FILE", requires = "kubeconfig_secret")]
    target_kubeconfig: Option<PathBuf>,
}

/// `k8s api`.
#[derive(clap::Args)]
#[command(after_help = "Examples:
  scaletest k8s api --pods 4 -- churn --rate 100 -d 5m --namespaces 4
  scaletest k8s api --pods 10 -- watch --watchers 1000 -d 10m
  scaletest k8s api -- run deployments --set namespaces=20
  scaletest k8s api --render -- churn -w 10 -n 1000 > churn.yaml")]
pub(crate) struct ApiArgs {
    #[command(flatten)]
    place: Place,
    /// Pods running the command at once; their runs are merged into one report.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pods: i32,
    /// Also write the merged run as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Keep the runner (namespace, Job and its pods, ClusterRole) after reading its results
    /// [default: removed].
    #[arg(long)]
    keep: bool,
    /// What to run: `scaletest api`'s arguments (churn …, watch --watchers …, run …).
    #[arg(last = true, required = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// `k8s nodes`.
#[derive(clap::Subcommand)]
pub(crate) enum NodesCommand {
    /// Hollow nodes as shard pods (a StatefulSet), then wait until every Node is Ready.
    #[command(after_help = "Examples:
  scaletest k8s nodes up --nodes 5000 --per-pod 500
  scaletest k8s nodes up --nodes 5000 --kubeconfig-secret target-cluster   Kubemark's layout
  scaletest k8s nodes up --nodes 1000 --render > hollow.yaml
  scaletest k8s nodes down")]
    Up(NodesUpArgs),
    /// Remove the shard pods, their Nodes and Leases, and the runner.
    Down(NodesDownArgs),
}

/// `k8s nodes up`.
#[derive(clap::Args)]
pub(crate) struct NodesUpArgs {
    #[command(flatten)]
    place: Place,
    /// Hollow nodes in all (rounded up to whole pods).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    nodes: u64,
    /// Hollow nodes per pod (sized from bench/nodes.sh's figures).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    per_pod: u64,
    /// The StatefulSet's name; Nodes are named PREFIX-ORDINAL-i.
    #[arg(long, default_value = "hollow")]
    prefix: String,
    /// More `scaletest nodes` arguments (`--kubelet-version 1.28`, `--watch shared`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// `k8s nodes down`.
#[derive(clap::Args)]
pub(crate) struct NodesDownArgs {
    #[command(flatten)]
    place: Place,
    /// The StatefulSet's name (the Nodes' prefix).
    #[arg(long, default_value = "hollow")]
    prefix: String,
}

impl Place {
    fn run(&self, default: &str) -> Result<(String, String), Usage> {
        let run = self.run.clone().unwrap_or_else(|| default.to_string());
        if !kapi::spec::valid_run_id(&run) {
            return Err(Usage(format!(
                "--run {run:?}: 1-40 lowercase letters, digits and '-'"
            )));
        }
        let ns = self
            .namespace
            .clone()
            .unwrap_or_else(|| format!("scaletest-{run}"));
        Ok((run, ns))
    }

    fn runner(&self, run: (String, String), what: What, rules: Rules) -> Runner {
        Runner {
            run: run.0,
            namespace: run.1,
            image: self
                .image
                .clone()
                .unwrap_or_else(|| k8s::spec::DEFAULT_IMAGE.to_string()),
            pull_policy: self.pull_policy.clone(),
            what,
            rules,
            kubeconfig_secret: self.kubeconfig_secret.clone(),
        }
    }

    fn connect(&self, rt: &tokio::runtime::Runtime) -> anyhow::Result<kube::Client> {
        connect_to(rt, self.kubeconfig.as_deref(), self.context.as_deref())
    }

    /// The cluster the hollow nodes register in: the pods' own, or --target-kubeconfig's
    /// (None: with --kubeconfig-secret and no --target-kubeconfig, not reachable from here).
    fn nodes_cluster(
        &self,
        rt: &tokio::runtime::Runtime,
        own: &kube::Client,
    ) -> anyhow::Result<Option<kube::Client>> {
        match (&self.kubeconfig_secret, &self.target_kubeconfig) {
            (None, _) => Ok(Some(own.clone())),
            (Some(_), Some(kc)) => connect_to(rt, Some(kc), None).map(Some),
            (Some(_), None) => Ok(None),
        }
    }
}

fn connect_to(
    rt: &tokio::runtime::Runtime,
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Client> {
    let per_call = Some(Duration::from_secs(30));
    let (client, _) = rt
        .block_on(kapi::connect(kubeconfig, context, per_call, false))
        .map_err(fault)?;
    Ok(client)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn print(text: &str) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn applied(list: Vec<k8s::cluster::Applied>) {
    for x in list {
        let change = format!("{:?}", x.change).to_lowercase();
        eprintln!("scaletest: {} {change}", x.object);
    }
}

/// (group, plural) of a resource as `--resource` takes it, through discovery.
async fn group_plural(client: &kube::Client, spec: &str) -> anyhow::Result<(String, String)> {
    let t = kapi::resolve(client, spec).await.map_err(fault)?;
    Ok((t.ar.group.clone(), t.ar.plural.clone()))
}

/// The last line of a pod's log holding a run: its report and warnings go to stderr, which
/// a container's log interleaves with the JSON line on stdout.
fn run_in_log(pod: &str, log: &str) -> Result<ApiRun, String> {
    let mut last = format!("pod {pod}: no run in its log");
    for line in log
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
    {
        match ApiRun::from_json(pod, line.trim()) {
            Ok(r) => return Ok(r),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The verbs `needs` uses, through discovery, and the workload file to mount (not for a
/// built-in workload).
async fn rules_for(
    client: &kube::Client,
    needs: &RunnerNeeds,
) -> anyhow::Result<(Rules, Option<(String, String)>)> {
    Ok(match needs {
        RunnerNeeds::Churn {
            resource,
            watch,
            namespaces,
            ..
        } => {
            let (g, p) = group_plural(client, resource).await?;
            (Rules::churn(&g, &p, *watch, *namespaces), None)
        }
        RunnerNeeds::Watch { resource, .. } => {
            let (g, p) = group_plural(client, resource).await?;
            (Rules::watch(&g, &p), None)
        }
        RunnerNeeds::Run {
            workload,
            set,
            cleanup,
        } => {
            let (name, text) = super::api_run::read_workload(workload)?;
            let w = kapi::workload::spec::parse(&name, &text, set).map_err(Usage)?;
            let targets = kapi::workload::run::resolve_all(client, &w)
                .await
                .map_err(fault)?;
            let kinds: Vec<(String, String)> = targets
                .values()
                .map(|t| (t.ar.group.clone(), t.ar.plural.clone()))
                .collect();
            let file = (!super::api_run::is_built_in(workload)).then(|| {
                let base = std::path::Path::new(workload)
                    .file_name()
                    .map_or("workload.yaml".into(), |f| f.to_string_lossy().into_owned());
                (base, text)
            });
            (Rules::run(&kinds, *cleanup), file)
        }
    })
}

/// `k8s api -- ARGS`.
pub(crate) fn api(a: ApiArgs) -> anyhow::Result<ExitCode> {
    let needs = runner_needs(&a.args)?;
    let run_id_given = a
        .args
        .iter()
        .any(|x| x == "--run-id" || x.starts_with("--run-id="));
    if a.pods > 1 && run_id_given {
        return Err(Usage(
            "k8s api: --run-id with --pods > 1: the pods would make the same objects".into(),
        )
        .into());
    }
    let bound = match &needs {
        RunnerNeeds::Churn { duration, .. } | RunnerNeeds::Watch { duration, .. } => *duration,
        RunnerNeeds::Run { .. } => None,
    };
    let timeout = a.place.timeout.unwrap_or(match bound {
        Some(d) => d + Duration::from_secs(600),
        None => Duration::from_secs(1_800),
    });
    let place = a.place.run("api")?;
    let rt = runtime()?;
    let client = a.place.connect(&rt)?;
    let (rules, workload) = rt.block_on(rules_for(&client, &needs))?;
    let mut args = a.args.clone();
    if let (
        Some((base, _)),
        RunnerNeeds::Run {
            workload: given, ..
        },
    ) = (&workload, &needs)
    {
        // The file's path as the pods see it.
        if let Some(w) = args.iter_mut().find(|x| *x == given) {
            *w = format!("{}/{base}", runner::WORKLOAD_DIR);
        }
    }
    let (ns, selector) = (place.1.clone(), format!("{}={}", kapi::LABEL_RUN, place.0));
    let what = What::Api {
        args,
        pods: a.pods,
        workload,
    };
    let r = a.place.runner(place, what, rules);
    let objects = r.objects();
    if a.place.render {
        return print(&runner::render(&objects));
    }
    let role = r.role_name();
    let exists = rt.block_on(k8s::launch::job_exists(&client, &ns, "scaletest-api"));
    if exists.map_err(fault)? {
        return Err(Usage(format!(
            "k8s api: a runner is in namespace {ns} already (kept, or left by a failed run): \
             `kubectl delete namespace {ns}`, or give another --run"
        ))
        .into());
    }
    let logs = rt.block_on(async {
        let done = async {
            applied(k8s::launch::apply(&client, &objects).await?);
            let (ok, failed) =
                k8s::launch::wait_job(&client, &ns, "scaletest-api", timeout).await?;
            eprintln!("scaletest: {ok} pod(s) finished, {failed} failed");
            k8s::launch::results(&client, &ns, &selector).await
        }
        .await;
        // Removed whatever happened, so that the next run starts clean.
        if !a.keep {
            let gone = k8s::launch::remove(&client, &ns, &role, Duration::from_secs(300)).await;
            match gone {
                Ok(()) => {
                    eprintln!("scaletest: removed the runner (namespace {ns}; --keep keeps it)")
                }
                Err(e) => eprintln!("scaletest: the runner in {ns} is left: {e}"),
            }
        }
        done
    });
    let logs = logs.map_err(fault)?;
    let runs: Vec<ApiRun> = logs
        .iter()
        .filter_map(|(pod, log)| match run_in_log(pod, log) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("scaletest: {e}");
                None
            }
        })
        .collect();
    let Some(merged) = ApiRun::merge(&runs) else {
        eprintln!("scaletest: no pod left a run in its log");
        return Ok(ExitCode::from(1));
    };
    eprintln!("scaletest: merged the runs of {} pod(s)", runs.len());
    if let Some(p) = &a.json {
        report::write_json_atomic(&merged, p)
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
    }
    print(&kapi::output::render(&merged, !merged.slo.is_empty()))?;
    Ok(if runs.len() == a.pods as usize {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `k8s nodes up|down`.
pub(crate) fn nodes(c: NodesCommand) -> anyhow::Result<ExitCode> {
    match c {
        NodesCommand::Up(a) => nodes_up(a),
        NodesCommand::Down(a) => nodes_down(a),
    }
}

fn nodes_up(a: NodesUpArgs) -> anyhow::Result<ExitCode> {
    if !kapi::spec::valid_run_id(&a.prefix) {
        return Err(Usage(format!("--prefix {:?}: a DNS label", a.prefix)).into());
    }
    let place = a.place.run("hollow")?;
    let what = What::Nodes {
        nodes: a.nodes,
        per_pod: a.per_pod,
        prefix: a.prefix.clone(),
        args: a.args.clone(),
    };
    let objects = a.place.runner(place, what, Rules::nodes()).objects();
    if a.place.render {
        return print(&runner::render(&objects));
    }
    let pods = runner::shards(a.nodes, a.per_pod);
    let want = (pods * a.per_pod.min(a.nodes)) as usize;
    if want as u64 != a.nodes {
        eprintln!(
            "scaletest: {pods} pods of {} nodes: {want} hollow nodes",
            a.per_pod
        );
    }
    let rt = runtime()?;
    let client = a.place.connect(&rt)?;
    let nodes_at = a.place.nodes_cluster(&rt, &client)?;
    let timeout = a.place.timeout.unwrap_or(Duration::from_secs(600));
    rt.block_on(async {
        applied(k8s::launch::apply(&client, &objects).await?);
        if let Some(c) = &nodes_at {
            let mut say = |l: String| eprintln!("scaletest: {l}");
            k8s::launch::wait_nodes(c, &a.prefix, want, timeout, &mut say).await?;
        }
        Ok::<_, k8s::Error>(())
    })
    .map_err(fault)?;
    match nodes_at {
        Some(_) => println!("{want} hollow nodes Ready from {pods} pod(s)"),
        None => println!(
            "{pods} pod(s) of {want} hollow nodes applied; they register in the cluster of \
             Secret {} (not waited for: give --target-kubeconfig)",
            a.place.kubeconfig_secret.as_deref().unwrap_or("")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn nodes_down(a: NodesDownArgs) -> anyhow::Result<ExitCode> {
    let place = a.place.run("hollow")?;
    let what = What::Nodes {
        nodes: 1,
        per_pod: 1,
        prefix: a.prefix.clone(),
        args: Vec::new(),
    };
    let role = a
        .place
        .runner(place.clone(), what, Rules::nodes())
        .role_name();
    let rt = runtime()?;
    let client = a.place.connect(&rt)?;
    let nodes_at = a.place.nodes_cluster(&rt, &client)?;
    let timeout = a.place.timeout.unwrap_or(Duration::from_secs(600));
    let prefix = a.prefix.clone();
    let c = rt
        .block_on(async {
            k8s::launch::remove(&client, &place.1, &role, timeout).await?;
            let Some(c) = &nodes_at else {
                return Ok(None);
            };
            nodes::cleanup_where(c, |n| runner::shard_node(&prefix, n))
                .await
                .map(Some)
                .map_err(|e| k8s::Error::Api {
                    what: "removing the hollow nodes".into(),
                    cause: e.to_string(),
                })
        })
        .map_err(fault)?;
    match c {
        Some(c) => println!(
            "removed the runner (namespace {}), {} hollow node(s) and {} lease(s)",
            place.1, c.nodes, c.leases
        ),
        None => println!(
            "removed the runner (namespace {}); its Nodes are in the cluster of Secret {}: \
             give --target-kubeconfig to remove them",
            place.1,
            a.place.kubeconfig_secret.as_deref().unwrap_or("")
        ),
    }
    Ok(ExitCode::SUCCESS)
}
