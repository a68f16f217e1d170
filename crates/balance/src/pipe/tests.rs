//! The pool against loopback backends that the tests script byte by byte.

use super::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

fn cfg() -> PipeConfig {
    PipeConfig {
        depth: 8,
        max_conns: 64,
        connect_timeout: Duration::from_secs(2),
        idle: Duration::from_secs(30),
        // Requests submitted back to back share a connection even on a loaded machine;
        // the test of stalls sets its own.
        stall: Duration::from_secs(1),
    }
}

fn get(path: &str) -> Outgoing {
    Outgoing {
        bytes: Bytes::from(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")),
        head_request: false,
        exclusive: false,
    }
}

/// A POST: it travels alone.
fn post() -> Outgoing {
    Outgoing {
        bytes: Bytes::from_static(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        head_request: false,
        exclusive: true,
    }
}

fn local_test(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A test that waits for a connection that never comes fails instead of hanging CI.
    tokio::task::LocalSet::new()
        .block_on(&rt, async {
            tokio::time::timeout(Duration::from_secs(30), f).await
        })
        .expect("the test did not finish within 30 s");
}

/// Read from `s` until `n` request heads have arrived; returns the bytes.
async fn read_requests(s: &mut TcpStream, n: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&got).matches("\r\n\r\n").count() < n {
        let k = s.read(&mut buf).await.unwrap();
        assert!(k > 0, "client closed early");
        got.extend_from_slice(&buf[..k]);
    }
    String::from_utf8(got).unwrap()
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn body(r: Result<Result<Reply, Fail>, oneshot::error::RecvError>) -> String {
    let reply = r.unwrap().unwrap();
    match reply.body {
        ReplyBody::Done(b) => String::from_utf8(b.to_vec()).unwrap(),
        ReplyBody::Stream(mut rx) => {
            let mut out = Vec::new();
            while let Some(p) = rx.recv().await {
                out.extend_from_slice(&p.unwrap());
            }
            String::from_utf8(out).unwrap()
        }
    }
}

#[test]
fn requests_of_one_turn_share_one_connection_and_answers_keep_their_order() {
    local_test(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let pool = Pool::new(cfg());
        let rxs: Vec<_> = (0..5)
            .map(|i| pool.submit(addr, get(&format!("/{i}"))).0)
            .collect();
        let (mut s, _) = l.accept().await.unwrap();
        let got = read_requests(&mut s, 5).await;
        let paths: Vec<&str> = got.lines().filter(|l| l.starts_with("GET")).collect();
        assert_eq!(paths.len(), 5, "{got}");
        assert!(paths
            .iter()
            .enumerate()
            .all(|(i, p)| p.starts_with(&format!("GET /{i} "))));
        // All answers in one write, the last one streamed in two pieces.
        let all: String = (0..4).map(|i| ok(&format!("r{i}"))).collect();
        s.write_all(format!("{all}HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nr4").as_bytes())
            .await
            .unwrap();
        let mut rxs = rxs.into_iter();
        let mut answers = Vec::new();
        for rx in rxs.by_ref().take(4) {
            answers.push(body(rx.await).await);
        }
        assert_eq!(answers, ["r0", "r1", "r2", "r3"]);
        assert_eq!(pool.open_to(addr), 1);
        s.write_all(b"tail").await.unwrap();
        assert_eq!(body(rxs.next().unwrap().await).await, "r4tail");
        // No second connection was made.
        assert!(tokio::time::timeout(Duration::from_millis(50), l.accept())
            .await
            .is_err());
    });
}

#[test]
fn a_request_joins_the_write_pending_in_its_turn_before_an_idle_connection() {
    local_test(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let pool = Pool::new(cfg());
        // Two connections, then both idle: a POST travels alone, so the GET opens another.
        let (p, cp) = pool.submit(addr, post());
        let (g, cg) = pool.submit(addr, get("/g"));
        assert!(!Rc::ptr_eq(&cp, &cg));
        for _ in 0..2 {
            let (mut s, _) = l.accept().await.unwrap();
            read_requests(&mut s, 1).await;
            s.write_all(ok("w").as_bytes()).await.unwrap();
            // Keep the connection open for the rest of the test.
            tokio::task::spawn_local(async move {
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
            });
        }
        assert_eq!(
            (body(p.await).await, body(g.await).await),
            ("w".into(), "w".into())
        );
        // Both idle now; two requests of one turn go out in one write on one of them.
        let (_x, cx) = pool.submit(addr, get("/x"));
        let (_y, cy) = pool.submit(addr, get("/y"));
        assert!(
            Rc::ptr_eq(&cx, &cy),
            "the second request took the other idle connection"
        );
        assert_eq!(pool.open_to(addr), 2);
    });
}

#[test]
fn a_non_idempotent_request_travels_alone_and_a_stalled_connection_takes_no_more() {
    local_test(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // A stall long enough that a loaded machine cannot make /a stale before /b is
        // submitted (the three submits below are synchronous), short enough to wait out.
        let stall = Duration::from_millis(300);
        let pool = Pool::new(PipeConfig { stall, ..cfg() });
        let (a, _) = pool.submit(addr, get("/a"));
        let (p, _) = pool.submit(addr, post());
        // Behind the POST nothing may queue: this GET joins the first connection.
        let (b, _) = pool.submit(addr, get("/b"));
        let (mut s1, _) = l.accept().await.unwrap();
        let (mut s2, _) = l.accept().await.unwrap();
        let g1 = read_requests(&mut s1, 1).await;
        let g2 = read_requests(&mut s2, 1).await;
        let (mut get_conn, mut post_conn, first) = if g1.starts_with("GET") {
            (s1, s2, g1)
        } else {
            (s2, s1, g2)
        };
        let mut gets = first;
        if gets.matches("\r\n\r\n").count() < 2 {
            gets.push_str(&read_requests(&mut get_conn, 1).await);
        }
        assert!(
            gets.contains("GET /a ") && gets.contains("GET /b "),
            "{gets}"
        );
        // Let the GET connection's oldest request go stale: the next one opens another.
        tokio::time::sleep(stall + Duration::from_millis(5)).await;
        let (c, _) = pool.submit(addr, get("/c"));
        let (mut s3, _) = l.accept().await.unwrap();
        assert!(read_requests(&mut s3, 1).await.starts_with("GET /c "));
        post_conn.write_all(ok("p").as_bytes()).await.unwrap();
        get_conn
            .write_all(format!("{}{}", ok("a"), ok("b")).as_bytes())
            .await
            .unwrap();
        s3.write_all(ok("c").as_bytes()).await.unwrap();
        assert_eq!(body(p.await).await, "p");
        assert_eq!(body(a.await).await, "a");
        assert_eq!(body(b.await).await, "b");
        assert_eq!(body(c.await).await, "c");
    });
}

#[test]
fn failures_say_whether_the_backend_saw_the_request() {
    local_test(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let pool = Pool::new(cfg());
        // The first answer says close: the two behind it were not processed.
        let rxs: Vec<_> = (0..3)
            .map(|i| pool.submit(addr, get(&format!("/{i}"))).0)
            .collect();
        let (mut s, _) = l.accept().await.unwrap();
        read_requests(&mut s, 3).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")
            .await
            .unwrap();
        drop(s);
        let mut rxs = rxs.into_iter();
        assert_eq!(body(rxs.next().unwrap().await).await, "x");
        for rx in rxs {
            assert!(matches!(rx.await.unwrap(), Err(Fail::Unsent)));
        }
        // Closed with no answer: lost, which only idempotent requests survive.
        let (rx, _) = pool.submit(addr, get("/lost"));
        let (mut s, _) = l.accept().await.unwrap();
        read_requests(&mut s, 1).await;
        drop(s);
        assert!(matches!(rx.await.unwrap(), Err(Fail::Lost(_))));
        // A bad head fails its request.
        let (rx, _) = pool.submit(addr, get("/bad"));
        let (mut s, _) = l.accept().await.unwrap();
        read_requests(&mut s, 1).await;
        s.write_all(b"NOT HTTP\r\n\r\n").await.unwrap();
        assert!(matches!(rx.await.unwrap(), Err(Fail::Malformed(_))));
        // Nobody listening: never sent.
        drop(l);
        let (rx, _) = pool.submit(addr, get("/refused"));
        assert!(matches!(rx.await.unwrap(), Err(Fail::Connect(_))));
    });
}

#[test]
fn chunked_and_close_delimited_bodies_arrive_whole_as_framed() {
    local_test(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let pool = Pool::new(cfg());
        let (chunked, _) = pool.submit(addr, get("/chunked"));
        let (mut s, _) = l.accept().await.unwrap();
        read_requests(&mut s, 1).await;
        s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n")
            .await
            .unwrap();
        let reply = chunked.await.unwrap().unwrap();
        assert!(!reply.close_delimited);
        let ReplyBody::Stream(mut rx) = reply.body else {
            panic!("half a body must stream")
        };
        s.write_all(b"5\r\npedia\r\n0\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        while let Some(p) = rx.recv().await {
            got.extend_from_slice(&p.unwrap());
        }
        assert_eq!(got, b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n");
        // The connection is still in step for the next request.
        let (until_close, _) = pool.submit(addr, get("/old"));
        read_requests(&mut s, 1).await;
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nto the end")
            .await
            .unwrap();
        drop(s);
        let reply = until_close.await.unwrap();
        assert!(reply.as_ref().is_ok_and(|r| r.close_delimited));
        assert_eq!(body(Ok(reply)).await, "to the end");
    });
}
