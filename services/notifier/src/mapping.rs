//! Fleetcast alert -> Alertmanager alert (API v2 `postableAlert`), as pure functions without
//! I/O, so the wire shape is tested on its own.
//!
//! Identity: Alertmanager identifies an alert by its label set (the fingerprint). The labels
//! are `alertname="FleetcastPredictedBreach"`, `server`, `target`, `severity`, `profile`; they
//! change only when the severity (or the server's profile) changes, and then the old label set is
//! resolved and a new alert starts. Posting the same labels with the same `startsAt` again (a
//! resend, a redelivery after a crash, a retry) updates the one alert Alertmanager already has
//! and notifies nobody again: notifications come from Alertmanager's groups on their own
//! `group_interval`/`repeat_interval` schedule, not from posts.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemas::{Alert, AlertBasis};
use serde::{Deserialize, Serialize};

/// The `alertname` of every predicted alert.
pub const ALERTNAME: &str = "FleetcastPredictedBreach";

/// One element of the JSON array `POST /api/v2/alerts` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339, wall clock: when the alert (this label set) was first stored on the bus.
    pub starts_at: String,
    /// RFC 3339: in the future while firing (now + TTL), the resolve time once resolved.
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// Alertmanager's identity of an alert: `(server.target id, severity, profile)`, i.e. its
/// label set, since `alertname` is fixed and `server`/`target` make the id.
pub type LabelKey = (String, &'static str, &'static str);

/// The label-set identity of `alert` (see [`LabelKey`]).
pub fn label_key(alert: &Alert) -> LabelKey {
    (alert.id.clone(), alert.severity.name(), alert.profile.name())
}

/// The labels Alertmanager routes, groups and silences on.
pub fn labels(alert: &Alert) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alertname".to_string(), ALERTNAME.to_string()),
        ("server".to_string(), alert.server.clone()),
        ("target".to_string(), alert.target.name().to_string()),
        ("severity".to_string(), alert.severity.name().to_string()),
        ("profile".to_string(), alert.profile.name().to_string()),
    ])
}

/// The dashboard page of one server: `<dashboard>/servers/<server>`. Server names are
/// `[A-Za-z0-9._-]` (checked before this is called), so they need no escaping.
pub fn server_link(dashboard: &str, server: &str) -> String {
    format!("{}/servers/{server}", dashboard.trim_end_matches('/'))
}

/// The `description` annotation: what crossed which threshold when, in words.
fn description(alert: &Alert) -> String {
    let (target, server, profile) = (alert.target.name(), &alert.server, alert.profile.name());
    let (severity, threshold, minutes, predicted) =
        (alert.severity.name(), num(alert.threshold), alert.minutes_ahead, num(alert.predicted));
    match alert.basis {
        AlertBasis::Seasonal => format!(
            "{target} on {server} ({profile}) was {predicted} one day before the step {minutes} minutes ahead, \
             over the threshold {threshold}: a daily recurrence ({severity})."
        ),
        basis => format!(
            "The {} forecast of {target} on {server} ({profile}) crosses the {severity} threshold {threshold} in \
             {minutes} minutes; predicted value at the crossing {predicted}.",
            basis.label()
        ),
    }
}

/// Human and machine readable details: `summary`, `description`, `predicted`, `threshold`,
/// `current` (when known), `minutes_ahead` (source time), `basis` and `dashboard` (link).
pub fn annotations(alert: &Alert, dashboard: &str) -> BTreeMap<String, String> {
    let target = alert.target.name();
    let basis = alert.basis.label();
    let mut a = BTreeMap::from([
        (
            "summary".to_string(),
            format!(
                "{} {target} predicted to reach {} in {} min ({} threshold {})",
                alert.server,
                num(alert.predicted),
                alert.minutes_ahead,
                alert.severity.name(),
                num(alert.threshold)
            ),
        ),
        ("description".to_string(), description(alert)),
        ("predicted".to_string(), num(alert.predicted)),
        ("threshold".to_string(), num(alert.threshold)),
        ("minutes_ahead".to_string(), alert.minutes_ahead.to_string()),
        ("basis".to_string(), basis.to_string()),
        ("dashboard".to_string(), server_link(dashboard, &alert.server)),
    ]);
    if let Some(current) = alert.current.filter(|c| c.is_finite()) {
        a.insert("current".to_string(), num(current));
    }
    a
}

/// The alert as Alertmanager takes it. `starts_ms`: Unix ms (wall clock) the label set began;
/// `ends_ms`: Unix ms it ends (the future while firing).
pub fn postable(alert: &Alert, starts_ms: i64, ends_ms: i64, dashboard: &str) -> PostableAlert {
    PostableAlert {
        labels: labels(alert),
        annotations: annotations(alert, dashboard),
        starts_at: rfc3339(starts_ms),
        // Alertmanager refuses an end before the start.
        ends_at: rfc3339(ends_ms.max(starts_ms)),
        generator_url: server_link(dashboard, &alert.server),
    }
}

/// Unix ms as RFC 3339 UTC with milliseconds (`2026-05-01T12:00:00.000Z`); before 1970 is 1970.
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// Wall clock now in Unix ms.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A value with at most two decimals and no trailing zeros (`97.25`, `95`).
fn num(v: f32) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{AlertBasis, AlertState, Level, Profile, Target};

    pub(crate) fn alert() -> Alert {
        Alert {
            id: "ppdb001.cpu".into(),
            server: "ppdb001".into(),
            profile: Profile::Database,
            target: Target::Cpu,
            severity: Level::Critical,
            basis: AlertBasis::P50,
            threshold: 95.0,
            predicted: 97.256,
            current: Some(81.5),
            steps_ahead: 7,
            minutes_ahead: 35,
            state: AlertState::Opened,
            opened_ms: 1,
            updated_ms: 1,
        }
    }

    #[test]
    fn maps_labels_annotations_and_times() {
        let a = postable(&alert(), 1_767_225_600_000, 1_767_225_840_000, "http://dash:8080/");
        let json = serde_json::to_value(&a).expect("json");
        assert_eq!(
            json["labels"],
            serde_json::json!({"alertname": "FleetcastPredictedBreach", "server": "ppdb001", "target": "cpu",
                               "severity": "critical", "profile": "database"})
        );
        assert_eq!(json["startsAt"], "2026-01-01T00:00:00.000Z");
        assert_eq!(json["endsAt"], "2026-01-01T00:04:00.000Z");
        assert_eq!(json["generatorURL"], "http://dash:8080/servers/ppdb001");
        let ann = &json["annotations"];
        assert_eq!(ann["predicted"], "97.26");
        assert_eq!(ann["threshold"], "95");
        assert_eq!(ann["current"], "81.5");
        assert_eq!(ann["minutes_ahead"], "35");
        assert_eq!(ann["basis"], "P50");
        assert_eq!(ann["dashboard"], "http://dash:8080/servers/ppdb001");
        assert_eq!(ann["summary"], "ppdb001 cpu predicted to reach 97.26 in 35 min (critical threshold 95)");
    }

    #[test]
    fn end_never_precedes_start_and_unknown_current_is_left_out() {
        let mut al = alert();
        al.current = None;
        al.basis = AlertBasis::P90;
        let a = postable(&al, 2_000, 1_000, "http://d");
        assert_eq!(a.starts_at, a.ends_at);
        assert!(!a.annotations.contains_key("current"));
        assert_eq!(a.annotations["basis"], "P90");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_seasonal_alert_says_it_recurs_from_yesterday() {
        let mut al = alert();
        (al.basis, al.severity, al.minutes_ahead) = (AlertBasis::Seasonal, Level::Warning, 120);
        let ann = annotations(&al, "http://d");
        assert_eq!(ann["basis"], "seasonal");
        assert_eq!(
            ann["description"],
            "cpu on ppdb001 (database) was 97.26 one day before the step 120 minutes ahead, over the threshold 95: \
             a daily recurrence (warning)."
        );
        assert!(annotations(&alert(), "http://d")["description"].starts_with("The P50 forecast of cpu on ppdb001"));
    }

    #[test]
    fn label_key_follows_the_label_set() {
        let mut b = alert();
        assert_eq!(label_key(&alert()), label_key(&b));
        b.severity = Level::Warning;
        assert_ne!(label_key(&alert()), label_key(&b));
        b = alert();
        b.predicted = 1.0;
        b.minutes_ahead = 5;
        assert_eq!(label_key(&alert()), label_key(&b), "annotations are not identity");
    }
}
