//! Demo controls: switch the generator's scenario through its NATS control service. Shown in
//! the navigation only while the generator answers its status probe.

use std::time::{Instant, SystemTime};

use askama::Template;

use schemas::Scenario;

use crate::control::{GeneratorStatus, SwitchOutcome};
use crate::format;

pub struct Outcome {
    /// `okbox` or `errors`.
    pub class: &'static str,
    pub text: String,
}

pub struct Button {
    pub value: &'static str,
    pub label: &'static str,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "demo_live.html")]
pub struct DemoLive {
    pub available: bool,
    pub checked: String,
    pub error: Option<String>,
    pub scenario: Option<&'static str>,
    pub affected: usize,
    pub affected_names: String,
    pub fleet_size: u32,
    pub tick: u64,
    pub ramp: String,
    pub buttons: Vec<Button>,
    pub csrf: String,
    pub outcome: Option<Outcome>,
}

fn label(s: Scenario) -> &'static str {
    match s {
        Scenario::Healthy => "Healthy",
        Scenario::Degrading => "Degrading",
        Scenario::Critical => "Critical",
        Scenario::Cascade => "Cascade",
    }
}

pub fn build(g: &GeneratorStatus, available: bool, outcome: Option<&SwitchOutcome>, csrf: &str) -> DemoLive {
    let reply = g.reply.as_ref().filter(|_| available);
    let current = reply.map(|r| r.scenario);
    let checked = match g.checked {
        Some(t) => format!("{} ago", format::span(Instant::now().duration_since(t))),
        None => "not yet".into(),
    };
    let outcome = outcome.map(|o| {
        let ago = format::span(SystemTime::now().duration_since(o.at).unwrap_or_default());
        match &o.result {
            Ok(r) => Outcome {
                class: "okbox",
                text: format!(
                    "Switched to {} {} ago (was {}); {} server(s) affected, ramping over {} steps.",
                    r.scenario.name(),
                    ago,
                    r.previous.map(|p| p.name()).unwrap_or("unknown"),
                    r.affected.len(),
                    r.ramp_steps
                ),
            },
            Err(e) => Outcome { class: "errors", text: format!("Switching to {} failed {} ago: {e}", o.requested.name(), ago) },
        }
    });
    DemoLive {
        available,
        checked,
        error: g.last_error.clone(),
        scenario: current.map(Scenario::name),
        affected: reply.map(|r| r.affected.len()).unwrap_or(0),
        affected_names: reply
            .map(|r| {
                let mut s = r.affected.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
                if r.affected.len() > 10 {
                    s.push_str(&format!(" and {} more", r.affected.len() - 10));
                }
                s
            })
            .unwrap_or_default(),
        fleet_size: reply.map(|r| r.fleet_size).unwrap_or(0),
        tick: reply.map(|r| r.tick).unwrap_or(0),
        ramp: reply.map(|r| format!("{} steps", r.ramp_steps)).unwrap_or_default(),
        buttons: Scenario::ALL.iter().map(|s| Button { value: s.name(), label: label(*s), current: current == Some(*s) }).collect(),
        csrf: csrf.to_string(),
        outcome,
    }
}
