use super::*;
use st_http::blocking::{call, Reply};
use std::time::Instant;

fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Reply {
    call(addr, "GET", path, token, "", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

fn loopback(token: Option<&str>) -> Running {
    start(Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
    })
    .expect("the endpoint starts")
}

/// Work with a name to find in the profile.
#[inline(never)]
fn spin_for_the_profile(stop: &AtomicBool) -> u64 {
    let mut x = 0u64;
    while !stop.load(Ordering::Relaxed) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    x
}

#[test]
fn seconds_are_bounded_with_go_s_default() {
    assert_eq!(seconds(None), Ok(30));
    assert_eq!(seconds(Some("debug=1")), Ok(30));
    assert_eq!(seconds(Some("seconds=1")), Ok(1));
    assert_eq!(seconds(Some("x=y&seconds=60")), Ok(60));
    for bad in [
        "seconds=0",
        "seconds=61",
        "seconds=-1",
        "seconds=",
        "seconds=2s",
    ] {
        let e = seconds(Some(bad)).unwrap_err();
        assert!(
            e.contains("from 1 to 60") && !e.contains('\n'),
            "{bad}: {e}"
        );
    }
}

#[test]
fn a_non_loopback_address_needs_a_token() {
    let e = start(Config {
        bind: "0.0.0.0:0".parse().unwrap(),
        token: None,
    })
    .err()
    .expect("refused");
    assert!(matches!(e, Error::Exposed(_)), "{e}");
    assert!(e.to_string().contains("not a loopback address"), "{e}");
}

#[test]
fn a_token_once_given_is_asked_of_every_request() {
    let ep = loopback(Some("s3cret-token"));
    let r = get(ep.addr, "/debug/pprof/profile?seconds=1", None);
    assert_eq!(r.status, 401, "{}", r.body);
    let r = get(ep.addr, "/debug/pprof/heap", Some("wrong"));
    assert_eq!(r.status, 401, "{}", r.body);
    let r = get(ep.addr, "/debug/pprof/heap", Some("s3cret-token"));
    assert_eq!(r.status, 501, "{}", r.body);
    assert!(r.body.starts_with("no heap profile") && r.body.lines().count() == 1);
}

#[test]
fn bad_requests_get_one_line() {
    let ep = loopback(None);
    for (path, code) in [
        ("/debug/pprof/profile?seconds=0", 400),
        ("/debug/pprof/profile?seconds=100", 400),
        ("/debug/pprof/", 404),
        ("/", 404),
    ] {
        let r = get(ep.addr, path, None);
        assert_eq!(r.status, code, "{path}: {}", r.body);
        assert_eq!(r.body.lines().count(), 1, "{path}: {}", r.body);
    }
    let r = call(
        ep.addr,
        "POST",
        PROFILE_PATH,
        None,
        "",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(r.status, 405, "{}", r.body);
    assert!(!ep.profiling(), "no request above took a profile");
}

#[test]
fn a_profile_names_the_functions_that_ran_and_one_is_taken_at_a_time() {
    let ep = loopback(None);
    let addr = ep.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || spin_for_the_profile(&stop))
    };
    let first = std::thread::spawn(move || get(addr, "/debug/pprof/profile?seconds=2", None));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ep.profiling() {
        assert!(Instant::now() < deadline, "the profile never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let second = get(addr, "/debug/pprof/profile?seconds=1", None);
    assert_eq!(second.status, 409, "{}", second.body);
    assert_eq!(second.body.lines().count(), 1, "{}", second.body);

    let r = first.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    spinner.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.head.contains("application/octet-stream"), "{}", r.head);
    assert_eq!(&r.bytes[..2], &[0x1f, 0x8b], "gzip'ed");
    let names = sampled_functions(&r.bytes).expect("a pprof profile");
    assert!(
        names.iter().any(|n| n.contains("spin_for_the_profile")),
        "{names:?}"
    );
    // The slot is free again, and the sampler gone with it.
    assert!(!ep.profiling());
}
