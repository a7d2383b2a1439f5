//! Auto-remediation: for each server at critical risk, the action its canonical profile's
//! playbook would take and the command that would run. Simulated: nothing is executed.

use askama::Template;

use schemas::Profile;

use super::Stamp;
use crate::format;
use crate::remediation;
use crate::state::Latest;

pub struct Item {
    pub name: String,
    pub href: String,
    pub risk: String,
    pub reason: String,
    pub command: String,
}

pub struct Group {
    pub profile: &'static str,
    pub action: &'static str,
    pub system: &'static str,
    pub items: Vec<Item>,
}

#[derive(Template)]
#[template(path = "remediation_live.html")]
pub struct RemediationLive {
    pub stamp: Option<Stamp>,
    pub groups: Vec<Group>,
    pub total: usize,
    pub threshold: f32,
}

pub fn build(latest: Option<&Latest>) -> RemediationLive {
    let mut groups: Vec<Group> = Profile::ALL
        .iter()
        .map(|p| {
            let pb = remediation::playbook(*p);
            Group { profile: p.label(), action: pb.action, system: pb.system, items: vec![] }
        })
        .collect();
    let mut total = 0;
    if let Some(l) = latest {
        for s in l.riskiest().filter(|s| remediation::triggers(s.risk)) {
            total += 1;
            // The headline of the reason that sets the level (the whole text is on the server view).
            let reason = s.reason.clone().unwrap_or_default();
            groups[s.profile.as_index()].items.push(Item {
                name: s.server.clone(),
                href: format::server_url(&s.server),
                risk: format::risk(s.risk),
                reason,
                command: remediation::command(&s.server, s.profile, s.risk),
            });
        }
    }
    RemediationLive { stamp: latest.map(Stamp::of), groups, total, threshold: remediation::TRIGGER_RISK }
}
