//! Servers that fail in one specific way each, for the load engine's error classes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One way to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehavior {
    /// Nothing listens on the port: connections are refused.
    Refuse,
    /// Reads the request, then resets the connection (RST, via SO_LINGER 0).
    Reset,
    /// Reads the request and never answers.
    Stall,
    /// Answers with bytes that are not HTTP, then closes.
    Garbage,
    /// Accepts nothing and lets its one-slot backlog fill: further connects hang (SYN dropped).
    Blackhole,
    /// Speaks plain HTTP/1.1 where the client expects TLS.
    NotTls,
}

/// A running misbehaving server; stops when dropped.
pub struct Misbehaving {
    /// Where it listens (or, for `Refuse`, where nothing does).
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    _keep: Vec<socket2::Socket>,
}

impl Misbehaving {
    /// Start one.
    pub fn start(how: Misbehavior) -> Misbehaving {
        let stop = Arc::new(AtomicBool::new(false));
        match how {
            Misbehavior::Refuse => {
                // Bound but not listening: connects are refused, and the port stays ours, so no
                // other test's server (or client socket) can take it meanwhile.
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .expect("socket");
                s.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
                    .expect("bind");
                let addr = s.local_addr().expect("addr").as_socket().expect("inet");
                Misbehaving {
                    addr,
                    stop,
                    _keep: vec![s],
                }
            }
            Misbehavior::Blackhole => {
                let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                    .expect("socket");
                s.bind(&"127.0.0.1:0".parse::<SocketAddr>().expect("addr").into())
                    .expect("bind");
                s.listen(0).expect("listen");
                let addr = s.local_addr().expect("addr").as_socket().expect("inet");
                // Fill the backlog so that the client's SYNs are dropped.
                let mut keep = vec![s];
                for _ in 0..2 {
                    let c =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .expect("socket");
                    c.set_nonblocking(true).expect("nonblocking");
                    let _ = c.connect(&addr.into());
                    keep.push(c);
                }
                std::thread::sleep(Duration::from_millis(50));
                Misbehaving {
                    addr,
                    stop,
                    _keep: keep,
                }
            }
            _ => {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = l.local_addr().expect("addr");
                l.set_nonblocking(true).expect("nonblocking");
                let flag = stop.clone();
                std::thread::spawn(move || accept_loop(l, how, flag));
                Misbehaving {
                    addr,
                    stop,
                    _keep: vec![],
                }
            }
        }
    }

    /// `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Misbehaving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(l: TcpListener, how: Misbehavior, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((s, _)) => {
                let flag = stop.clone();
                std::thread::spawn(move || misbehave(s, how, flag));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

fn misbehave(mut s: TcpStream, how: Misbehavior, stop: Arc<AtomicBool>) {
    match how {
        Misbehavior::Reset => {
            if read_head(&mut s) {
                let sock = socket2::Socket::from(s);
                let _ = sock.set_linger(Some(Duration::ZERO));
                drop(sock);
            }
        }
        Misbehavior::Stall => {
            read_head(&mut s);
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Misbehavior::Garbage => {
            if read_head(&mut s) {
                let _ = s.write_all(b"this is not http\r\n\r\n");
            }
        }
        Misbehavior::NotTls => {
            // A TLS ClientHello is not HTTP either; answer as a confused HTTP server would.
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
        Misbehavior::Refuse | Misbehavior::Blackhole => {}
    }
}
