//! `api run`: a workload of jobs (objects made from templates across namespaces, waits for
//! readiness, churn of namespaces, deletes, pauses), read and checked by [`spec`] before
//! anything is created, and run by [`run`]. Built-in examples: [`EXAMPLES`].

pub mod run;
pub mod spec;

/// The built-in workloads, by name: (name, what it is, its file).
pub const EXAMPLES: [(&str, &str, &str); 3] = [
    (
        "deployments",
        "N Deployments × M replicas + Services in K namespaces, waited for Ready",
        include_str!("workload/examples/deployments.yaml"),
    ),
    (
        "density",
        "ClusterLoader2's density: pods_per_node pause pods per node, waited for Running",
        include_str!("workload/examples/density.yaml"),
    ),
    (
        "configmaps",
        "seed 004's ConfigMap churn as a job: namespaces deleted and made again",
        include_str!("workload/examples/configmaps.yaml"),
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_built_in_examples_read() {
        for (name, _, text) in super::EXAMPLES {
            let w = super::spec::parse(name, text, &[]).unwrap_or_else(|e| panic!("{e}"));
            assert!(!w.jobs.is_empty(), "{name}");
        }
    }
}
