//! How a failed request is classified: the error classes reports count.

use std::io;

/// Why a request failed. Each class is counted separately in reports; none is retried by the
/// load engine (a load generator measures failures, it does not hide them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The target refused the TCP connection (nothing listening).
    ConnectRefused,
    /// The TCP connect or TLS handshake did not finish within the timeout.
    ConnectTimeout,
    /// Any other connect failure (unreachable network, no address).
    ConnectOther,
    /// No complete response within `--timeout`.
    RequestTimeout,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// The TLS handshake failed (bad certificate, no common protocol, no `h2` by ALPN).
    Tls,
    /// The response was not valid HTTP.
    Malformed,
    /// An I/O error that fits no other class.
    Other,
}

impl ErrorClass {
    /// Every class, in report order.
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::ConnectRefused,
        ErrorClass::ConnectTimeout,
        ErrorClass::ConnectOther,
        ErrorClass::RequestTimeout,
        ErrorClass::Reset,
        ErrorClass::Tls,
        ErrorClass::Malformed,
        ErrorClass::Other,
    ];

    /// Stable name used in reports and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::ConnectRefused => "connect_refused",
            ErrorClass::ConnectTimeout => "connect_timeout",
            ErrorClass::ConnectOther => "connect_error",
            ErrorClass::RequestTimeout => "request_timeout",
            ErrorClass::Reset => "reset",
            ErrorClass::Tls => "tls",
            ErrorClass::Malformed => "malformed_response",
            ErrorClass::Other => "io_error",
        }
    }

    /// Index into [`ErrorClass::ALL`], for array-based counters on the hot path.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Classify an error from `connect()`.
    pub fn from_connect_error(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => ErrorClass::ConnectRefused,
            io::ErrorKind::TimedOut => ErrorClass::ConnectTimeout,
            _ => ErrorClass::ConnectOther,
        }
    }

    /// Classify an I/O error on an established connection.
    pub fn from_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => ErrorClass::Reset,
            io::ErrorKind::TimedOut => ErrorClass::RequestTimeout,
            // rustls reports alerts and bad records as InvalidData.
            io::ErrorKind::InvalidData => ErrorClass::Tls,
            _ => ErrorClass::Other,
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
