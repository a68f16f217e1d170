//! A fleet as processes, for the CLI's fleet and chaos tests: `scaletest serve` as the target
//! that counts what it answered ([`server`], [`served`]) and loadbots ([`bot`]).

use crate::call::get;
use crate::Bin;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use testkit::Proc;

/// A `scaletest serve` on one thread on a free loopback port.
pub fn server(bin: Bin) -> (Proc, SocketAddr) {
    let l = bin.listening(&["serve", "--bind", "127.0.0.1:0", "--threads", "1"]);
    (l.proc, l.addr)
}

/// Requests a `scaletest serve` answered, from its /metrics (this scrape included).
pub fn served(addr: SocketAddr) -> u64 {
    get(addr, "/metrics")
        .lines()
        .filter(|l| l.starts_with("scaletest_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A `scaletest bot` named `name` on one load thread, registering with the aggregator at
/// `agg` with the token in the file `token`; its output dropped.
pub fn bot(bin: Bin, agg: SocketAddr, token: &Path, name: &str) -> Proc {
    Proc(
        bin.command()
            .args([
                "bot",
                "--aggregator",
                &format!("http://{agg}"),
                "--token-file",
            ])
            .arg(token)
            .args(["--name", name, "-t", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a bot"),
    )
}
