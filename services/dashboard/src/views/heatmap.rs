//! Heatmap: every server as one cell of one SVG, grouped by profile, coloured by risk level
//! or by a target's worst P50 over the horizon against its reference thresholds. A cell links
//! to the server. One fragment, no per-cell scripts.

use askama::Template;
use serde::Deserialize;

use schemas::{Profile, ServerSummary, Target};

use super::{level_class, Stamp};
use crate::charts;
use crate::format;
use crate::state::Latest;
use crate::thresholds;

const COLS: usize = 40;
const CELL: f32 = 16.0;
const GAP: f32 = 2.0;
const LABEL_H: f32 = 20.0;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HeatmapQuery {
    pub by: Option<String>,
}

/// What the colour shows: the risk level, or one target's horizon peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Risk,
    Target(Target),
}

impl By {
    pub fn parse(s: Option<&str>) -> By {
        match s {
            None | Some("risk") => By::Risk,
            Some(name) => Target::from_name(name).map(By::Target).unwrap_or(By::Risk),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            By::Risk => "risk",
            By::Target(t) => t.name(),
        }
    }
}

pub struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "heatmap_controls.html")]
pub struct HeatmapControls {
    pub options: Vec<Choice>,
}

pub fn controls(by: By) -> HeatmapControls {
    let mut options = vec![Choice { value: "risk", label: "Risk level", selected: by == By::Risk }];
    options.extend(Target::ALL.iter().map(|t| Choice { value: t.name(), label: t.label(), selected: by == By::Target(*t) }));
    HeatmapControls { options }
}

pub struct HeatCell {
    pub x: f32,
    pub y: f32,
    pub href: String,
    pub class: &'static str,
    pub title: String,
}

pub struct GroupLabel {
    pub y: f32,
    pub text: String,
}

#[derive(Template)]
#[template(path = "heatmap_live.html")]
pub struct HeatmapLive {
    pub stamp: Option<Stamp>,
    pub by_label: &'static str,
    pub width: f32,
    pub height: f32,
    pub cell: f32,
    pub cells: Vec<HeatCell>,
    pub labels: Vec<GroupLabel>,
    pub legend: Vec<(&'static str, &'static str)>,
}

/// The worst P50 over the horizon, or the current value without a forecast (warming up).
fn peak(s: &ServerSummary, t: Target) -> Option<f32> {
    s.target(t).and_then(|b| b.peak_p50.or(b.current))
}

pub fn build(latest: Option<&Latest>, by: By) -> HeatmapLive {
    let legend = match by {
        By::Risk => vec![("healthy", "Healthy <20"), ("watch", "Watch 20-39"), ("warning", "Warning 40-69"), ("critical", "Critical ≥70")],
        By::Target(_) => vec![
            ("ok", "below the server's warning line"),
            ("warn", "warning"),
            ("crit", "critical"),
            ("none", "no threshold"),
            ("unknown", "unknown"),
        ],
    };
    let by_label = match by {
        By::Risk => "risk level now",
        By::Target(t) => t.label(),
    };
    let mut out = HeatmapLive {
        stamp: latest.map(Stamp::of),
        by_label,
        width: COLS as f32 * (CELL + GAP),
        height: 0.0,
        cell: CELL,
        cells: Vec::new(),
        labels: Vec::new(),
        legend,
    };
    let Some(latest) = latest else { return out };
    let servers = &latest.snapshot.servers;
    out.cells.reserve(servers.len());
    let mut y = 0.0;
    for profile in Profile::ALL {
        let mut group: Vec<&ServerSummary> = servers.iter().filter(|s| s.profile == profile).collect();
        if group.is_empty() {
            continue;
        }
        // Stable positions (by name) so a cell does not jump around between snapshots.
        group.sort_by(|a, b| a.server.cmp(&b.server));
        out.labels.push(GroupLabel { y: y + 14.0, text: format!("{} ({})", profile.label(), group.len()) });
        let (cells, bottom) = charts::grid(group.len(), COLS, CELL, GAP, y + LABEL_H);
        for (s, c) in group.iter().zip(cells) {
            let (class, value) = match by {
                By::Risk => (level_class(s.level), format!("risk {}", format::risk(s.risk))),
                By::Target(t) => {
                    let v = peak(s, t);
                    (
                        thresholds::band(thresholds::for_profile(&latest.snapshot, s.profile, t), v),
                        format!("{} peak {}", t.label(), format::target_value(t, v)),
                    )
                }
            };
            out.cells.push(HeatCell {
                x: c.x,
                y: c.y,
                href: format::server_url(&s.server),
                class,
                title: format!("{} · {value}", s.server),
            });
        }
        y = bottom + 6.0;
    }
    out.height = y.max(CELL);
    out
}
