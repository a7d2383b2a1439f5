//! The generator's control service as the demo view sees it: a periodic status probe that
//! decides whether the demo controls are shown, and the scenario switch request.

use std::time::{Duration, Instant, SystemTime};

use schemas::subjects::{CONTROL_SCENARIO_SET, CONTROL_SCENARIO_STATUS};
use schemas::{Scenario, ScenarioReply, ScenarioRequest};

use crate::locks::lock;
use crate::state::Shared;

/// Header the async-nats service API sets on an error reply.
const SERVICE_ERROR: &str = "Nats-Service-Error";

#[derive(Debug, Clone, Default)]
pub struct GeneratorStatus {
    pub reply: Option<ScenarioReply>,
    pub seen: Option<Instant>,
    pub checked: Option<Instant>,
    pub last_error: Option<String>,
}

impl GeneratorStatus {
    /// Answered within the last three probe periods.
    pub fn available(&self, now: Instant, probe: Duration) -> bool {
        self.seen.is_some_and(|t| now.duration_since(t) <= probe * 3 + Duration::from_secs(1))
    }
}

/// The result of the last switch, shown on the demo view after the POST redirect.
#[derive(Debug, Clone)]
pub struct SwitchOutcome {
    pub at: SystemTime,
    pub requested: Scenario,
    pub result: Result<ScenarioReply, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no NATS connection")]
    NoConnection,
    #[error("no generator answers on {0}")]
    NoResponders(&'static str),
    #[error("the generator did not answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(String),
    #[error("the generator refused: {0}")]
    Refused(String),
    #[error("unreadable reply: {0}")]
    BadReply(String),
}

async fn request(
    client: &async_nats::Client,
    subject: &'static str,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<ScenarioReply, ControlError> {
    let fut = client.request(subject, payload.into());
    let msg = match tokio::time::timeout(timeout, fut).await {
        Err(_) => return Err(ControlError::Timeout(timeout)),
        Ok(Err(e)) => {
            return Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => ControlError::NoResponders(subject),
                async_nats::RequestErrorKind::TimedOut => ControlError::Timeout(timeout),
                _ => ControlError::Request(e.to_string()),
            })
        }
        Ok(Ok(msg)) => msg,
    };
    if let Some(err) = msg.headers.as_ref().and_then(|h| h.get(SERVICE_ERROR)) {
        return Err(ControlError::Refused(err.as_str().to_string()));
    }
    decode_reply(&msg.payload)
}

/// Reads a reply as MessagePack, or JSON (the generator answers `nats req` users in JSON).
pub fn decode_reply(payload: &[u8]) -> Result<ScenarioReply, ControlError> {
    match schemas::decode::<ScenarioReply>(payload) {
        Ok(r) => Ok(r),
        Err(mp) => serde_json::from_slice(payload).map_err(|_| ControlError::BadReply(mp.to_string())),
    }
}

pub async fn status(client: &async_nats::Client, timeout: Duration) -> Result<ScenarioReply, ControlError> {
    request(client, CONTROL_SCENARIO_STATUS, Vec::new(), timeout).await
}

pub async fn set(client: &async_nats::Client, scenario: Scenario) -> Result<ScenarioReply, ControlError> {
    let body = schemas::encode(&ScenarioRequest { scenario }).map_err(|e| ControlError::Request(e.to_string()))?;
    request(client, CONTROL_SCENARIO_SET, body, Duration::from_secs(3)).await
}

/// Switches the scenario, records the outcome for the demo view and refreshes the status.
pub async fn switch(state: &Shared, scenario: Scenario) -> SwitchOutcome {
    let result = match state.nats() {
        Some(c) => set(c, scenario).await,
        None => Err(ControlError::NoConnection),
    };
    if let Ok(reply) = &result {
        let mut g = lock(&state.generator);
        g.reply = Some(reply.clone());
        g.seen = Some(Instant::now());
    }
    let outcome = SwitchOutcome { at: SystemTime::now(), requested: scenario, result: result.map_err(|e| e.to_string()) };
    *lock(&state.last_switch) = Some(outcome.clone());
    outcome
}

/// Asks for the generator's status every `--generator-probe`, until shutdown.
pub async fn probe_loop(state: Shared) {
    let Some(client) = state.nats().cloned() else { return };
    let period = state.args.generator_probe;
    let mut shutdown = state.shutdown_signal();
    loop {
        let res = status(&client, period.min(Duration::from_secs(2))).await;
        {
            let mut g = lock(&state.generator);
            g.checked = Some(Instant::now());
            match res {
                Ok(reply) => {
                    g.reply = Some(reply);
                    g.seen = Some(Instant::now());
                    g.last_error = None;
                }
                Err(e) => g.last_error = Some(e.to_string()),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> ScenarioReply {
        ScenarioReply {
            v: 1,
            scenario: Scenario::Critical,
            previous: Some(Scenario::Healthy),
            affected: vec!["ppdb001".into()],
            fleet_size: 20,
            tick: 7,
            ramp_steps: 12,
        }
    }

    #[test]
    fn replies_decode_from_msgpack_and_json() {
        let mp = schemas::encode(&reply()).unwrap();
        assert_eq!(decode_reply(&mp).unwrap(), reply());
        let js = serde_json::to_vec(&reply()).unwrap();
        assert_eq!(decode_reply(&js).unwrap(), reply());
        assert!(matches!(decode_reply(b"\xc1garbage"), Err(ControlError::BadReply(_))));
    }

    #[test]
    fn availability_expires() {
        let probe = Duration::from_millis(100);
        let now = Instant::now();
        let mut g = GeneratorStatus::default();
        assert!(!g.available(now, probe));
        g.seen = Some(now);
        assert!(g.available(now + Duration::from_millis(500), probe));
        assert!(!g.available(now + Duration::from_secs(3), probe));
    }
}
