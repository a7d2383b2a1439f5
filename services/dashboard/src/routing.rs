//! Alert routing, simulated and configurable: which channel each server level would notify,
//! and the fleet-level rules of the original's alerting tab (30-minute incident probability
//! pages or posts to chat, 8-hour probability e-mails). No notification is ever sent.

use std::collections::HashMap;

use schemas::{FleetFigures, Level};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    PagerDuty,
    Slack,
    Email,
    None,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::PagerDuty, Channel::Slack, Channel::Email, Channel::None];

    pub fn name(self) -> &'static str {
        match self {
            Channel::PagerDuty => "pagerduty",
            Channel::Slack => "slack",
            Channel::Email => "email",
            Channel::None => "none",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Channel::PagerDuty => "PagerDuty (page on-call)",
            Channel::Slack => "Slack #ops-alerts",
            Channel::Email => "E-mail digest",
            Channel::None => "No notification",
        }
    }

    pub fn from_name(s: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub critical: Channel,
    pub warning: Channel,
    pub watch: Channel,
    /// Fleet: page when P(incident in 30 min) exceeds this.
    pub page_30m: f32,
    /// Fleet: post to chat when P(incident in 30 min) exceeds this.
    pub chat_30m: f32,
    /// Fleet: e-mail when P(incident in 8 h) exceeds this.
    pub email_8h: f32,
}

impl Default for Routing {
    /// The original's alerting tab.
    fn default() -> Self {
        Routing {
            critical: Channel::PagerDuty,
            warning: Channel::Slack,
            watch: Channel::Email,
            page_30m: 0.7,
            chat_30m: 0.4,
            email_8h: 0.5,
        }
    }
}

/// A fleet-level notification the rules would send now.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRoute {
    pub channel: Channel,
    pub why: String,
}

impl Routing {
    pub fn for_level(&self, level: Level) -> Channel {
        match level {
            Level::Critical => self.critical,
            Level::Warning => self.warning,
            Level::Watch => self.watch,
            Level::Healthy => Channel::None,
        }
    }

    /// The fleet notifications for these figures (the strongest 30-minute one, plus e-mail).
    pub fn fleet(&self, f: &FleetFigures) -> Vec<FleetRoute> {
        let mut out = Vec::new();
        let p30 = f.prob_incident_30m;
        if p30 > self.page_30m {
            out.push(FleetRoute { channel: Channel::PagerDuty, why: format!("P(30 min) {:.0}% > {:.0}%", p30 * 100.0, self.page_30m * 100.0) });
        } else if p30 > self.chat_30m {
            out.push(FleetRoute { channel: Channel::Slack, why: format!("P(30 min) {:.0}% > {:.0}%", p30 * 100.0, self.chat_30m * 100.0) });
        }
        if f.prob_incident_8h > self.email_8h {
            out.push(FleetRoute {
                channel: Channel::Email,
                why: format!("P(8 h) {:.0}% > {:.0}%", f.prob_incident_8h * 100.0, self.email_8h * 100.0),
            });
        }
        out
    }

    /// Applies the routing form; an unknown channel or a probability outside 0-100 names the
    /// field and leaves the routing unchanged.
    pub fn with_form(&self, form: &HashMap<String, String>) -> Result<Routing, (String, String)> {
        let mut r = self.clone();
        for (field, slot) in [("critical", &mut r.critical), ("warning", &mut r.warning), ("watch", &mut r.watch)] {
            if let Some(v) = form.get(field) {
                *slot = Channel::from_name(v).ok_or_else(|| (field.to_string(), format!("unknown channel {v:?}")))?;
            }
        }
        for (field, slot) in [("page_30m", &mut r.page_30m), ("chat_30m", &mut r.chat_30m), ("email_8h", &mut r.email_8h)] {
            if let Some(v) = form.get(field) {
                let pct: f32 = v.trim().parse().map_err(|_| (field.to_string(), format!("{v:?} is not a number")))?;
                if !(0.0..=100.0).contains(&pct) {
                    return Err((field.to_string(), format!("{v} is not a percentage between 0 and 100")));
                }
                *slot = pct / 100.0;
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(p30: f32, p8: f32) -> FleetFigures {
        FleetFigures { prob_incident_30m: p30, prob_incident_8h: p8, ..Default::default() }
    }

    #[test]
    fn fleet_rules_match_the_original() {
        let r = Routing::default();
        let chans = |f: &FleetFigures| r.fleet(f).into_iter().map(|x| x.channel).collect::<Vec<_>>();
        assert_eq!(chans(&fleet(0.75, 0.2)), [Channel::PagerDuty]);
        assert_eq!(chans(&fleet(0.5, 0.6)), [Channel::Slack, Channel::Email]);
        assert!(chans(&fleet(0.1, 0.1)).is_empty());
        assert_eq!(r.for_level(Level::Critical), Channel::PagerDuty);
        assert_eq!(r.for_level(Level::Healthy), Channel::None);
    }

    #[test]
    fn form_updates_and_rejects_with_the_field_name() {
        let r = Routing::default();
        let form: HashMap<String, String> =
            [("warning", "email"), ("page_30m", "90")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let r2 = r.with_form(&form).unwrap();
        assert_eq!(r2.warning, Channel::Email);
        assert!((r2.page_30m - 0.9).abs() < 1e-6);
        let bad: HashMap<String, String> = [("critical".to_string(), "carrier-pigeon".to_string())].into();
        assert_eq!(r.with_form(&bad).unwrap_err().0, "critical");
        let bad: HashMap<String, String> = [("email_8h".to_string(), "150".to_string())].into();
        assert_eq!(r.with_form(&bad).unwrap_err().0, "email_8h");
    }
}
