//! Fleetcast's wire contract.
//!
//! Every message that crosses NATS is defined here, once, with its MessagePack encoding
//! (named fields, so any language can read it) and its validation. Services depend on this
//! crate and never on each other. `README.md` beside this crate documents each subject.

pub mod alert;
pub mod codec;
pub mod control;
pub mod curves;
pub mod history;
pub mod method;
pub mod metric;
pub mod partition;
pub mod parts;
pub mod profile;
pub mod record;
pub mod rejection;
pub mod snapshot;
pub mod subjects;
pub mod summary;
mod summary_wire;
pub mod validate;

pub use alert::{Alert, AlertBasis, AlertEvent, AlertState, Level};
pub use codec::{decode, encode, CodecError, CONTENT_TYPE, CONTENT_TYPE_HEADER};
pub use control::{Scenario, ScenarioReply, ScenarioRequest, ServerState};
pub use method::Method;
pub use metric::{Metric, Metrics, Target, METRIC_COUNT, TARGET_COUNT};
pub use profile::Profile;
pub use record::{MetricRecord, MetricsBatch};
pub use rejection::Rejection;
pub use snapshot::{
    Explanation, FleetFigures, MethodAccuracy, ModelInfo, PartInfo, ProfileThresholds, ServerForecast, ServerOdds, Snapshot,
    SnapshotAssembler, SnapshotHeader, TargetAccuracy, TargetForecast, TargetThresholds, Warmup,
};
pub use summary::{AlertBrief, Breach, ReasonBrief, ServerSummary, Sparkline, TargetBrief};
pub use validate::{RejectReason, ValidationError, ValidationPolicy};

/// Version of the wire contract, carried as `v` in every top-level message.
/// Bump it on any change that an older reader would misread.
pub const SCHEMA_VERSION: u16 = 1;

/// Version of the snapshot on `predictions.current` (its `v`): 2 since it carries per-server
/// summaries ([`ServerSummary`]) instead of full forecasts (1). Readers reject other versions.
pub const SNAPSHOT_VERSION: u16 = 2;

/// One forecast step: five minutes of simulated or real time. Every horizon is counted in these.
pub const STEP_MS: i64 = 5 * 60 * 1000;

/// Forecast horizon in steps (96 x 5 min = 8 h).
pub const HORIZON_STEPS: usize = 96;
