//! The server's figures as Prometheus text in a run's own `/metrics` (`api watch`, `nodes`):
//! what the run's report will say, as of the last scrape, so a dashboard can follow it.

use super::{call_text, ServerSide};
use std::fmt::Write as _;

/// A label value as the exposition format writes it.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The figures, every family with its TYPE line.
pub fn text(sv: &ServerSide) -> String {
    let mut s = String::new();
    let version = esc(sv.version.as_deref().unwrap_or(""));
    let _ = writeln!(
        s,
        "# TYPE scaletest_apiserver_info gauge\nscaletest_apiserver_info{{version=\"{version}\"}} 1"
    );
    let _ = writeln!(
        s,
        "# TYPE scaletest_apiserver_scrapes counter\nscaletest_apiserver_scrapes_total {}",
        sv.scrapes
    );
    let call = |c: &super::ServerCalls| {
        format!(
            "verb=\"{}\",resource=\"{}\",subresource=\"{}\",scope=\"{}\"",
            esc(&c.verb),
            esc(&c.resource),
            esc(&c.subresource),
            esc(&c.scope)
        )
    };
    s += "# TYPE scaletest_apiserver_requests counter\n";
    for c in &sv.calls {
        let _ = writeln!(
            s,
            "scaletest_apiserver_requests_total{{{}}} {}",
            call(c),
            c.count
        );
    }
    s += "# TYPE scaletest_apiserver_request_duration_p99_seconds gauge\n";
    for c in &sv.calls {
        if let Some(p) = c.p99_s {
            let _ = writeln!(
                s,
                "scaletest_apiserver_request_duration_p99_seconds{{{}}} {p}",
                call(c)
            );
        }
    }
    s += "# TYPE scaletest_apiserver_apf_wait_p99_seconds gauge\n";
    for l in &sv.apf {
        if let Some(p) = l.wait_p99_s {
            let pl = esc(&l.priority_level);
            let _ = writeln!(
                s,
                "scaletest_apiserver_apf_wait_p99_seconds{{priority_level=\"{pl}\"}} {p}"
            );
        }
    }
    s += "# TYPE scaletest_apiserver_apf_rejected counter\n";
    for l in &sv.apf {
        for (reason, n) in &l.rejected {
            let _ = writeln!(
                s,
                "scaletest_apiserver_apf_rejected_total{{priority_level=\"{}\",reason=\"{}\"}} {n}",
                esc(&l.priority_level),
                esc(reason)
            );
        }
    }
    s += "# TYPE scaletest_apiserver_inflight_max gauge\n";
    for g in &sv.inflight {
        let _ = writeln!(
            s,
            "scaletest_apiserver_inflight_max{{request_kind=\"{}\"}} {}",
            esc(&g.what),
            g.max
        );
    }
    s += "# TYPE scaletest_apiserver_etcd_request_p99_seconds gauge\n";
    for e in &sv.etcd {
        if let Some(p) = e.p99_s {
            let _ = writeln!(
                s,
                "scaletest_apiserver_etcd_request_p99_seconds{{operation=\"{}\",type=\"{}\"}} {p}",
                esc(&e.operation),
                esc(&e.resource)
            );
        }
    }
    s += "# TYPE scaletest_apiserver_slo_pass gauge\n";
    for c in &sv.slo {
        let what = call_text(&c.verb, &c.resource, &c.subresource, &c.scope);
        let _ = writeln!(
            s,
            "scaletest_apiserver_slo_pass{{call=\"{}\"}} {}",
            esc(&what),
            u8::from(c.pass)
        );
    }
    s
}
