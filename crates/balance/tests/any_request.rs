//! No client input may change a backend's health: after any sequence of requests (every
//! method, targets in all four forms, hop-by-hop headers, bodies, HTTP/1.0, HTTP/1.1 and
//! HTTP/2 clients that wait or leave early), in front of HTTP/1.1 and h2c backends, every
//! backend is still up with no error counted against it and an ordinary GET is answered 200.

use balance::backends::Health;
use balance::health::HealthConfig;
use proptest::prelude::*;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;
use testsupport::anyreq::{self, plain_get, AnyRequest, Client, Leave, Target};

fn backend() -> SocketAddr {
    // One backend for every case: it must keep serving whatever the balancer sent it.
    static B: OnceLock<serve::Running> = OnceLock::new();
    B.get_or_init(|| serve::start(serve::Config::loopback("v1")).unwrap())
        .addr
}

/// A balancer whose health checks never run during a case: an ejected backend stays out.
fn balancer(backend_h2: bool) -> balance::Running {
    balance::start(balance::Config {
        health: HealthConfig {
            interval: Duration::from_secs(600),
            ..Default::default()
        },
        timeout: Duration::from_secs(5),
        backend_h2,
        ..balance::Config::new(vec![backend()], "t")
    })
    .unwrap()
}

/// Send `seq` through a new balancer, then check the backend and an ordinary GET.
fn unharmed(backend_h2: bool, seq: &[AnyRequest]) -> Result<(), TestCaseError> {
    let lb = balancer(backend_h2);
    for r in seq {
        anyreq::send(lb.addr, r);
    }
    for client in [Client::Http11, Client::Http2] {
        prop_assert_eq!(
            anyreq::send(lb.addr, &plain_get(client)),
            Some(200),
            "{:?}",
            client
        );
    }
    for b in lb.backends.snapshot().iter() {
        prop_assert_eq!(b.health(), Health::Up, "{}", b.addr);
        prop_assert_eq!(b.errors.load(Ordering::Relaxed), 0, "errors at {}", b.addr);
    }
    Ok(())
}

/// The two requests of the report, on each client and backend protocol: `OPTIONS *`
/// gets the backend's own answer (serve has no such route: 404) and the backend stays up.
#[test]
fn options_asterisk_is_forwarded_as_asterisk_and_harms_nothing() {
    for backend_h2 in [false, true] {
        for client in [Client::Http11, Client::Http2] {
            let lb = balancer(backend_h2);
            let options = AnyRequest {
                method: "OPTIONS".into(),
                target: Target::Asterisk,
                ..plain_get(client)
            };
            let what = format!("h2c backend {backend_h2}, client {client:?}");
            assert_eq!(anyreq::send(lb.addr, &options), Some(404), "{what}");
            assert_eq!(
                anyreq::send(lb.addr, &plain_get(client)),
                Some(200),
                "{what}"
            );
            let b = &lb.backends.snapshot()[0];
            assert_eq!(b.health(), Health::Up, "{what}");
            assert_eq!(b.errors.load(Ordering::Relaxed), 0, "{what}");
        }
    }
}

/// Targets the balancer cannot forward are its own 4xx/5xx, never sent elsewhere.
#[test]
fn targets_that_cannot_be_forwarded_are_refused_by_the_balancer() {
    for backend_h2 in [false, true] {
        let lb = balancer(backend_h2);
        let cases = [
            ("GET", Target::Asterisk, 400),
            ("GET", Target::Authority("h:443".into()), 400),
            ("CONNECT", Target::Authority("h:443".into()), 501),
        ];
        for client in [Client::Http11, Client::Http2] {
            for (method, target, code) in &cases {
                let r = AnyRequest {
                    method: method.to_string(),
                    target: target.clone(),
                    ..plain_get(client)
                };
                let got = anyreq::send(lb.addr, &r);
                // HTTP/2 has no `GET h:443`: h2 sends a path of "/" for it.
                if client == Client::Http2
                    && *method == "GET"
                    && matches!(target, Target::Authority(_))
                {
                    continue;
                }
                assert_eq!(
                    got,
                    Some(*code),
                    "h2c {backend_h2} {client:?} {method} {target:?}"
                );
            }
        }
        assert_eq!(
            lb.backends.snapshot()[0].requests.load(Ordering::Relaxed),
            0
        );
    }
}

/// Shapes the random search found, kept so that every run tries them.
#[test]
fn the_shapes_found_before_harm_nothing() {
    let found = [
        // A client gone while its request opened the h2c connection: the request waiting
        // for that connection got hyper-util's "request was canceled" as a connect error.
        (
            true,
            AnyRequest {
                client: Client::Http10,
                host: false,
                leave: Leave::AfterSending,
                ..plain_get(Client::Http10)
            },
        ),
        // CONNECT on the hyper path.
        (
            true,
            AnyRequest {
                method: "CONNECT".into(),
                host: false,
                body: anyreq::Body::Length(vec![0]),
                ..plain_get(Client::Http11)
            },
        ),
    ];
    for (backend_h2, r) in found {
        unharmed(backend_h2, std::slice::from_ref(&r)).unwrap_or_else(|e| panic!("{r:?}: {e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_request_changes_a_backends_health(
        backend_h2 in any::<bool>(),
        seq in prop::collection::vec(anyreq::any_request(), 1..6),
    ) {
        unharmed(backend_h2, &seq)?;
    }
}
