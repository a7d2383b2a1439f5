//! A rejected record (or a whole rejected message), published on `metrics.rejected` so an
//! operator can see what a source sends wrong without reading the predictor's logs.

use serde::{Deserialize, Serialize};

use crate::validate::ValidationError;

/// One rejection: which source, which batch and record, and the typed error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    pub v: u16,
    /// The source token of the subject (`metrics.batch.<source>`).
    pub source: String,
    /// The batch's `seq`, when its header decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The record's index in the batch; absent when the whole message was rejected
    /// (malformed, oversize, unsupported version, a skewed batch clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    /// The record's server, when it decoded and is a valid name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Field, offending value (cut to 64 characters), reason and rule.
    pub error: ValidationError,
    /// Wall clock at rejection (Unix ms).
    pub rejected_ms: i64,
}
