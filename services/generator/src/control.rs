//! The generator's control service (async-nats `service` API, so `nats micro ls` lists it
//! with stats): set the scenario on `control.generator.scenario.set`, read it on
//! `control.generator.scenario.status`.
//!
//! Requests are `ScenarioRequest` as MessagePack, or JSON when the payload starts with `{`
//! (for `nats req`); the reply comes in the same encoding. A bad request gets a service error
//! (`Nats-Service-Error`, code 400) that names the field and what was wrong with it.

use std::sync::{Arc, Mutex, MutexGuard};

use async_nats::service::{self, ServiceExt};
use bytes::Bytes;
use futures::StreamExt;
use schemas::subjects::{CONTROL_SCENARIO_SET, CONTROL_SCENARIO_STATUS};
use schemas::{Scenario, ScenarioReply, SCHEMA_VERSION};
use serde_json::Value;
use tracing::{info, warn};

use crate::fleet_sim::{OperatorScenario, Simulator};

pub const SERVICE_NAME: &str = "generator";

/// How a request was encoded; the reply uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    MessagePack,
}

impl Encoding {
    pub fn of(payload: &[u8]) -> Encoding {
        match payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Encoding::Json,
            _ => Encoding::MessagePack,
        }
    }
}

/// A request the service refuses: the field at fault and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct BadRequest {
    pub field: &'static str,
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> BadRequest {
    BadRequest { field, reason: reason.into() }
}

fn scenario_names() -> String {
    Scenario::ALL.map(Scenario::name).join(", ")
}

/// Reads a `ScenarioRequest`, checking it field by field so the error can name the field.
pub fn parse_set(payload: &[u8]) -> Result<(Scenario, Encoding), BadRequest> {
    let enc = Encoding::of(payload);
    let value: Value = match enc {
        Encoding::Json => serde_json::from_slice(payload).map_err(|e| bad("request", format!("not valid JSON: {e}")))?,
        Encoding::MessagePack => {
            if payload.is_empty() {
                return Err(bad("request", "empty; send {\"scenario\": \"<name>\"} as MessagePack or JSON"));
            }
            schemas::decode(payload).map_err(|e| bad("request", format!("not a MessagePack map: {e}")))?
        }
    };
    let Value::Object(map) = value else {
        return Err(bad("request", "must be a map with a `scenario` field"));
    };
    let scenario = match map.get("scenario") {
        None => return Err(bad("scenario", format!("is required (one of {})", scenario_names()))),
        Some(Value::String(s)) => s,
        Some(other) => return Err(bad("scenario", format!("must be a string, got {other}"))),
    };
    Scenario::from_name(scenario)
        .map(|s| (s, enc))
        .ok_or_else(|| bad("scenario", format!("unknown scenario {scenario:?}; one of {}", scenario_names())))
}

/// The reply for the operator's current scenario.
pub fn reply(sim: &Simulator, current: &OperatorScenario, previous: Option<Scenario>) -> ScenarioReply {
    ScenarioReply {
        v: SCHEMA_VERSION,
        scenario: current.scenario,
        previous,
        affected: sim.names(&current.affected),
        fleet_size: sim.fleet().len() as u32,
        tick: sim.steps_done(),
        ramp_steps: current.ramp,
    }
}

pub fn encode_reply(reply: &ScenarioReply, enc: Encoding) -> Result<Bytes, String> {
    match enc {
        Encoding::Json => serde_json::to_vec(reply).map(Bytes::from).map_err(|e| e.to_string()),
        Encoding::MessagePack => schemas::encode(reply).map(Bytes::from).map_err(|e| e.to_string()),
    }
}

fn lock(sim: &Mutex<Simulator>) -> MutexGuard<'_, Simulator> {
    sim.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handles one request; `Err` is the service error to send.
pub fn handle(sim: &Mutex<Simulator>, set: bool, payload: &[u8]) -> Result<Bytes, service::error::Error> {
    let to_service_error = |code: usize, status: String| service::error::Error { status, code };
    let (reply, enc) = if set {
        let (scenario, enc) = parse_set(payload).map_err(|e| to_service_error(400, e.to_string()))?;
        let mut s = lock(sim);
        let switch = s.set_scenario(scenario);
        info!(
            from = switch.previous.name(),
            to = scenario.name(),
            affected = switch.current.affected.len(),
            ramp_steps = switch.current.ramp,
            "scenario switched"
        );
        (reply(&s, &switch.current, Some(switch.previous)), enc)
    } else {
        let s = lock(sim);
        (reply(&s, s.operator(), None), Encoding::of(payload))
    };
    encode_reply(&reply, enc).map_err(|e| to_service_error(500, format!("encoding the reply: {e}")))
}

/// The running service; stop it on shutdown.
pub struct Control {
    service: service::Service,
    task: tokio::task::JoinHandle<()>,
}

impl Control {
    pub async fn stop(self) {
        self.task.abort();
        if let Err(e) = self.service.stop().await {
            warn!("stopping the control service: {e}");
        }
    }
}

/// Starts the control service on `client`, driving `sim`.
pub async fn start(client: &async_nats::Client, sim: Arc<Mutex<Simulator>>) -> anyhow::Result<Control> {
    let service = client
        .service_builder()
        .description("Fleetcast fleet generator: set and read the simulated fleet's scenario")
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| anyhow::anyhow!("starting the control service: {e}"))?;
    let endpoint = |name: &'static str, subject: &'static str| {
        let builder = service.endpoint_builder().name(name);
        async move { builder.add(subject).await.map_err(|e| anyhow::anyhow!("adding endpoint {subject}: {e}")) }
    };
    let set = endpoint("scenario_set", CONTROL_SCENARIO_SET).await?.map(|r| (true, r));
    let status = endpoint("scenario_status", CONTROL_SCENARIO_STATUS).await?.map(|r| (false, r));
    let mut requests = futures::stream::select(set, status);
    let task = tokio::spawn(async move {
        while let Some((is_set, req)) = requests.next().await {
            let result = handle(&sim, is_set, &req.message.payload);
            if let Err(e) = &result {
                warn!(subject = %req.message.subject, "refused control request: {}", e.status);
            }
            if let Err(e) = req.respond(result).await {
                warn!("answering a control request: {e}");
            }
        }
    });
    Ok(Control { service, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet_sim::SimConfig;
    use schemas::ScenarioRequest;

    #[test]
    fn requests_in_either_encoding() {
        assert_eq!(parse_set(br#"{"scenario":"critical"}"#), Ok((Scenario::Critical, Encoding::Json)));
        assert_eq!(parse_set(b"  {\"scenario\": \"cascade\", \"note\": 1}"), Ok((Scenario::Cascade, Encoding::Json)));
        let mp = schemas::encode(&ScenarioRequest { scenario: Scenario::Degrading }).unwrap();
        assert_eq!(parse_set(&mp), Ok((Scenario::Degrading, Encoding::MessagePack)));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases: [(&[u8], &str, &str); 6] = [
            (br#"{"scenario":"meltdown"}"#, "scenario", "unknown scenario \"meltdown\""),
            (br#"{"scenario":3}"#, "scenario", "must be a string"),
            (br#"{"scenaro":"critical"}"#, "scenario", "is required"),
            (br#"{"scenario":"#, "request", "not valid JSON"),
            (b"", "request", "empty"),
            (b"\xc1\x00", "request", "not a MessagePack map"),
        ];
        for (payload, field, reason) in cases {
            let e = parse_set(payload).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
        let list = schemas::encode(&vec![1, 2]).unwrap();
        assert_eq!(parse_set(&list).unwrap_err().field, "request");
    }

    #[test]
    fn handling_switches_and_reports() {
        let sim = Mutex::new(Simulator::new(SimConfig { servers: 20, seed: 1, start_ms: 0 }).unwrap());
        let out = handle(&sim, true, br#"{"scenario":"critical"}"#).unwrap();
        let r: ScenarioReply = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            (r.scenario, r.previous, r.affected.len(), r.fleet_size, r.ramp_steps),
            (Scenario::Critical, Some(Scenario::Healthy), 5, 20, 24)
        );
        let status = handle(&sim, false, b"").unwrap();
        let s: ScenarioReply = schemas::decode(&status).unwrap();
        assert_eq!((s.scenario, s.previous, s.affected), (Scenario::Critical, None, r.affected));
        let err = handle(&sim, true, br#"{"scenario":"x"}"#).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(err.status.starts_with("scenario: "), "{}", err.status);
    }
}
