//! Reading one alert event off the stream: decode, check, and say why when it cannot be used.
//! A bad event is counted by reason, logged, acknowledged and skipped; it never stops the
//! stream and never reaches Alertmanager.

use schemas::{AlertEvent, AlertState};

/// The schema version this notifier reads.
pub const VERSION: u16 = 1;

/// Why an event was skipped; `reason()` is the `reason` label of
/// `fleetcast_notifier_events_skipped_total`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BadEvent {
    #[error("not a MessagePack AlertEvent: {0}")]
    Undecodable(String),
    #[error("schema version {0}, this notifier reads {VERSION}")]
    UnsupportedVersion(u16),
    #[error("server name {0:?} is not a valid server name")]
    BadServerName(String),
    #[error("subject {subject:?} does not match the event ({state} on {server})")]
    Inconsistent { subject: String, state: &'static str, server: String },
}

impl BadEvent {
    pub fn reason(&self) -> &'static str {
        match self {
            BadEvent::Undecodable(_) => "undecodable",
            BadEvent::UnsupportedVersion(_) => "unsupported_version",
            BadEvent::BadServerName(_) => "bad_server_name",
            BadEvent::Inconsistent { .. } => "inconsistent",
        }
    }
}

/// An event as stored in stream HISTORY: its stream sequence and the wall-clock time the
/// server stored it (Unix ms), which is what Alertmanager's `startsAt`/`endsAt` use; the
/// event's own times are source time (simulated by the generator) and may run ahead.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub seq: u64,
    pub stored_ms: i64,
    pub event: AlertEvent,
}

/// Decodes the payload of a message on `subject` (`alerts.<state>.<server>`) and checks that
/// the version is known, the server name valid, and the subject names the same state and
/// server as the payload.
pub fn parse(subject: &str, payload: &[u8]) -> Result<AlertEvent, BadEvent> {
    let event: AlertEvent = schemas::decode(payload).map_err(|e| BadEvent::Undecodable(e.to_string()))?;
    if event.v != VERSION {
        return Err(BadEvent::UnsupportedVersion(event.v));
    }
    let alert = &event.alert;
    if schemas::validate::check_server_name(&alert.server).is_err() {
        return Err(BadEvent::BadServerName(alert.server.clone()));
    }
    let expected = schemas::subjects::alert_event(alert.state, &alert.server);
    let id_ok = alert.id == format!("{}.{}", alert.server, alert.target.name());
    if subject != expected || !id_ok {
        return Err(BadEvent::Inconsistent { subject: subject.to_string(), state: alert.state.name(), server: alert.server.clone() });
    }
    Ok(event)
}

/// Whether the event ends its alert.
pub fn is_resolved(event: &AlertEvent) -> bool {
    event.alert.state == AlertState::Resolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{Alert, AlertBasis, Level, Profile, Target};

    fn event(server: &str, state: AlertState) -> AlertEvent {
        AlertEvent {
            v: 1,
            tick_ms: 0,
            alert: Alert {
                id: format!("{server}.mem"),
                server: server.into(),
                profile: Profile::WebApi,
                target: Target::Mem,
                severity: Level::Warning,
                basis: AlertBasis::P90,
                threshold: 85.0,
                predicted: 90.0,
                current: None,
                steps_ahead: 2,
                minutes_ahead: 10,
                state,
                opened_ms: 0,
                updated_ms: 0,
            },
        }
    }

    fn bytes(e: &AlertEvent) -> Vec<u8> {
        schemas::encode(e).expect("encode")
    }

    #[test]
    fn accepts_what_the_predictor_publishes() {
        let e = event("ppweb003", AlertState::Updated);
        assert_eq!(parse("alerts.updated.ppweb003", &bytes(&e)), Ok(e));
    }

    #[test]
    fn says_why_an_event_is_bad() {
        let e = event("ppweb003", AlertState::Opened);
        assert_eq!(parse("alerts.opened.ppweb003", b"\x01\x02junk").map_err(|e| e.reason()), Err("undecodable"));
        let mut v2 = e.clone();
        v2.v = 2;
        assert_eq!(parse("alerts.opened.ppweb003", &bytes(&v2)), Err(BadEvent::UnsupportedVersion(2)));
        let bad = event("bad name", AlertState::Opened);
        assert_eq!(parse("alerts.opened.x", &bytes(&bad)).map_err(|e| e.reason()), Err("bad_server_name"));
        assert_eq!(parse("alerts.resolved.ppweb003", &bytes(&e)).map_err(|e| e.reason()), Err("inconsistent"));
        let mut other_id = e.clone();
        other_id.alert.id = "ppweb004.mem".into();
        assert_eq!(parse("alerts.opened.ppweb003", &bytes(&other_id)).map_err(|e| e.reason()), Err("inconsistent"));
    }
}
