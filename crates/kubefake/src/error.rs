//! Why a call failed, as the API server reports it: the HTTP status and the `Status` body it
//! sends with it.

use serde_json::{json, Value};

/// Why a call failed, as the API server reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404.
    NotFound(String),
    /// 409, create of a name that exists.
    AlreadyExists(String),
    /// 409, a stale resourceVersion.
    Conflict(String),
    /// 422 / 400.
    Invalid(String),
    /// 410: the version asked for is older than the event log.
    Gone(String),
}

impl ApiError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict(_) => 409,
            ApiError::Invalid(_) => 422,
            ApiError::Gone(_) => 410,
        }
    }

    /// A `Status` object, as the API server sends with an error.
    pub fn status(&self) -> Value {
        let (reason, msg) = match self {
            ApiError::NotFound(m) => ("NotFound", m),
            ApiError::AlreadyExists(m) => ("AlreadyExists", m),
            ApiError::Conflict(m) => ("Conflict", m),
            ApiError::Invalid(m) => ("Invalid", m),
            ApiError::Gone(m) => ("Expired", m),
        };
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": msg, "reason": reason, "code": self.code()})
    }
}
