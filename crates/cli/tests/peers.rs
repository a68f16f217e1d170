//! `scaletest load` against a real peer server (Debian's nginx), where what the server logged
//! is the evidence: what a test server of our own counts could share our own mistakes.

// Tests may print (see clippy.toml).
#![allow(clippy::disallowed_macros)]

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use testsupport::{text, tmpdir, wait_until, Bin};

const SCALETEST: Bin = Bin(env!("CARGO_BIN_EXE_scaletest"));
const NGINX: &str = "/usr/sbin/nginx";

/// nginx on a free loopback port, one process (killed with the test), logging each request's
/// URI to `dir/access.log`. Returns the process and its port.
fn nginx(dir: &Path) -> (testkit::Proc, u16) {
    let mut why = String::new();
    // A port the kernel just gave out and took back is free unless something takes it before
    // nginx binds it: then nginx exits, and another port is tried.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut proc = start_nginx(dir, port);
        let mut up = false;
        wait_until("nginx listening or gone", Duration::from_secs(10), || {
            up = TcpStream::connect(("127.0.0.1", port)).is_ok();
            up || proc.try_wait().unwrap().is_some()
        });
        // (Another listener that took the port would leave nginx's log empty: the test fails.)
        if up && proc.try_wait().unwrap().is_none() {
            return (proc, port);
        }
        why = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    }
    panic!("nginx did not start on three ports: {why}");
}

fn start_nginx(dir: &Path, port: u16) -> testkit::Proc {
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;
         error_log {d}/error.log;
         events {{ worker_connections 256; }}
         http {{
           log_format uri '$request_uri';
           access_log {d}/access.log uri;
           client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
           uwsgi_temp_path {d}; scgi_temp_path {d};
           server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}
         }}"
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let child = Command::new(NGINX)
        .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    testkit::Proc(child)
}

/// `{{seq}}` in the URL: nginx's access log shows every request of the run, each URL once,
/// exactly the sequence 0..n.
#[test]
fn seq_in_a_url_gives_nginx_a_distinct_url_for_every_request() {
    if !Path::new(NGINX).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "nginx is not installed; .ci/run installs it"
        );
        testkit::checks::skipped(
            "nginx's access log of a templated run",
            "/usr/sbin/nginx is not installed (apt-get install nginx; in CI, where CI is set, \
             this is a failure)",
        );
        return;
    }
    testkit::checks::ran("nginx's access log of a templated run");
    let dir = tmpdir("nginx-seq");
    let (mut server, port) = nginx(&dir);
    let o = SCALETEST.run(&[
        "load",
        &format!("http://127.0.0.1:{port}/item/{{{{seq}}}}?id={{{{uuid}}}}"),
        "-n",
        "300",
        "-c",
        "4",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    // nginx writes each log line when its request ends, before the answer's last byte is read.
    let log = dir.join("access.log");
    let lines = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(
        "300 lines in the access log",
        Duration::from_secs(10),
        || lines().lines().count() >= 300,
    );
    let _ = server.kill();
    let lines = lines();
    let uris: Vec<&str> = lines.lines().collect();
    assert_eq!(uris.len(), 300, "{lines}");
    let distinct: BTreeSet<&str> = uris.iter().copied().collect();
    assert_eq!(distinct.len(), 300, "a URL was sent twice");
    let mut seqs: Vec<u64> = uris
        .iter()
        .map(|u| {
            let (path, query) = u.split_once('?').expect("a query");
            assert_eq!(query.len(), "id=".len() + 36, "{u}");
            path.strip_prefix("/item/").unwrap().parse().unwrap()
        })
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..300).collect::<Vec<u64>>());
    let _ = std::fs::remove_dir_all(&dir);
}
