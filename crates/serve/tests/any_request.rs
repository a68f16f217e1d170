//! No client input may stop `serve` serving others: after any sequence of requests (see
//! `testsupport::anyreq`), on the quick path and on hyper's alone, a client that was already
//! connected was answered 200 all along, and new HTTP/1.1 and HTTP/2 clients are too.

use proptest::prelude::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use testsupport::anyreq::{self, plain_get, AnyRequest, Client};

fn server(hyper_only: bool) -> serve::Running {
    serve::start(serve::Config {
        hyper_only,
        ..serve::Config::loopback("v1")
    })
    .unwrap()
}

/// A keep-alive GET on `s`: its status, after reading the whole 13-byte answer.
fn keep_alive_get(s: &mut TcpStream) -> Result<u16, String> {
    s.write_all(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"hello, world\n") {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&buf)));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf)
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{:?}", String::from_utf8_lossy(&buf)))
}

fn unharmed(hyper_only: bool, seq: &[AnyRequest]) -> Result<(), TestCaseError> {
    let srv = server(hyper_only);
    let addr: SocketAddr = srv.addr;
    // A client connected before, asking all along: each answer within 2 s (they take well
    // under a millisecond), so that a request holding the server up fails as one stopping it.
    let mut other = TcpStream::connect(addr).map_err(|e| TestCaseError::fail(e.to_string()))?;
    other
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    prop_assert_eq!(keep_alive_get(&mut other), Ok(200));
    let stop = Arc::new(AtomicBool::new(false));
    let asking = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answered = 0u64;
            while !stop.load(Ordering::Relaxed) {
                keep_alive_get(&mut other)?;
                answered += 1;
            }
            keep_alive_get(&mut other)?;
            Ok::<u64, String>(answered + 1)
        })
    };
    for r in seq {
        anyreq::send(addr, r);
    }
    stop.store(true, Ordering::Relaxed);
    let answered = asking.join().expect("the asking client");
    prop_assert!(
        answered.is_ok(),
        "the client connected before: {:?}",
        answered
    );
    for client in [Client::Http11, Client::Http2] {
        prop_assert_eq!(
            anyreq::send(addr, &plain_get(client)),
            Some(200),
            "{:?}",
            client
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_request_stops_serve_serving_others(
        hyper_only in any::<bool>(),
        seq in prop::collection::vec(anyreq::any_request(), 1..6),
    ) {
        unharmed(hyper_only, &seq)?;
    }
}
