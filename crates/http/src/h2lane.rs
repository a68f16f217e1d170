//! HTTP/2 client connections (h2 crate): one connection, many concurrent streams.

use crate::stream::Stream;
use crate::{ErrorClass, Request, Response, VersionTag, VERSION_HEADER};
use bytes::Bytes;
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// A handle to an open HTTP/2 connection; clones share it.
#[derive(Clone)]
pub struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    alive: Rc<Cell<bool>>,
}

fn classify(e: &h2::Error) -> ErrorClass {
    if let Some(io) = e.get_io() {
        ErrorClass::from_io(io)
    } else if e.is_go_away() || e.is_reset() {
        ErrorClass::Reset
    } else {
        ErrorClass::Malformed
    }
}

impl H2Conn {
    pub(crate) async fn handshake(stream: Stream, timeout: Duration) -> Result<H2Conn, ErrorClass> {
        let hs = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(16 << 20)
            .handshake::<_, Bytes>(stream);
        let (send, conn) = match tokio::time::timeout(timeout, hs).await {
            Err(_) => return Err(ErrorClass::ConnectTimeout),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(x)) => x,
        };
        let alive = Rc::new(Cell::new(true));
        let flag = alive.clone();
        // The connection task lives on the worker's LocalSet and ends with the connection.
        tokio::task::spawn_local(async move {
            let _ = conn.await;
            flag.set(false);
        });
        Ok(H2Conn { send, alive })
    }

    /// Whether the connection can still take new streams.
    pub fn is_ready(&self) -> bool {
        self.alive.get()
    }

    /// One request on a new stream; waits for a stream slot if the server's limit is reached.
    pub async fn request(&self, req: &Request) -> Result<Response, ErrorClass> {
        let mut send = self.send.clone().ready().await.map_err(|e| self.fail(&e))?;
        let body = req.body();
        let (resp, mut tx) = send
            .send_request(req.h2_head(), body.is_empty())
            .map_err(|e| self.fail(&e))?;
        if !body.is_empty() {
            tx.send_data(body.clone(), true).map_err(|e| classify(&e))?;
        }
        let resp = resp.await.map_err(|e| classify(&e))?;
        let status = resp.status().as_u16();
        let version = resp
            .headers()
            .get(VERSION_HEADER)
            .map_or_else(VersionTag::default, |v| VersionTag::new(v.as_bytes()));
        let mut body = resp.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| classify(&e))?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok(Response { status, version })
    }

    fn fail(&self, e: &h2::Error) -> ErrorClass {
        // Errors before the stream opens mean the connection is done for.
        self.alive.set(false);
        classify(e)
    }
}
