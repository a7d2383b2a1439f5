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
    pub legend: Vec<(&'static str, String)>,
}

/// The worst P50 over the horizon, or the current value without a forecast (warming up).
fn peak(s: &ServerSummary, t: Target) -> Option<f32> {
    s.target(t).and_then(|b| b.peak_p50.or(b.current))
}

pub fn build(latest: Option<&Latest>, by: By) -> HeatmapLive {
    let Some(latest) = latest else {
        return empty(by, legend(by, None));
    };
    let servers = &latest.snapshot.servers;
    // A target no profile has a line for (network, by default) is coloured by where each
    // server's peak sits in the fleet's, by quarter: against no line every cell was grey.
    let quarters = match by {
        By::Target(t) if Profile::ALL.iter().all(|p| thresholds::for_profile(&latest.snapshot, *p, t) == (None, None)) => {
            Some(quartile_cuts(servers.iter().filter_map(|s| peak(s, t))))
        }
        _ => None,
    };
    let mut out = empty(by, legend(by, quarters.flatten()));
    out.stamp = Some(Stamp::of(latest));
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
                    let class = match quarters {
                        Some(cuts) => quarter_class(cuts, v),
                        None => thresholds::band(thresholds::for_profile(&latest.snapshot, s.profile, t), v),
                    };
                    (class, format!("{} peak {}", t.label(), format::target_value(t, v)))
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

/// The page before any server is placed.
fn empty(by: By, legend: Vec<(&'static str, String)>) -> HeatmapLive {
    let by_label = match by {
        By::Risk => "risk level now",
        By::Target(t) => t.label(),
    };
    HeatmapLive {
        stamp: None,
        by_label,
        width: COLS as f32 * (CELL + GAP),
        height: CELL,
        cell: CELL,
        cells: Vec::new(),
        labels: Vec::new(),
        legend,
    }
}

/// The legend's keys and words; `quarters`: the fleet's cut points when cells are coloured by
/// quarter ([`quarter_class`]).
fn legend(by: By, quarters: Option<[f32; 3]>) -> Vec<(&'static str, String)> {
    match (by, quarters) {
        (By::Risk, _) => {
            owned(&[("healthy", "Healthy <20"), ("watch", "Watch 20-39"), ("warning", "Warning 40-69"), ("critical", "Critical ≥70")])
        }
        (By::Target(t), Some([a, b, c])) => {
            let v = |x: f32| format::target_value(t, Some(x));
            vec![
                ("q1", format!("lowest quarter of the fleet (≤ {})", v(a))),
                ("q2", format!("{} – {}", v(a), v(b))),
                ("q3", format!("{} – {}", v(b), v(c))),
                ("q4", format!("highest quarter (> {})", v(c))),
                ("unknown", "unknown".into()),
            ]
        }
        (By::Target(_), _) => owned(&[
            ("ok", "below the server's warning line"),
            ("warn", "warning"),
            ("crit", "critical"),
            ("none", "no threshold"),
            ("unknown", "unknown"),
        ]),
    }
}

fn owned(keys: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    keys.iter().map(|(k, l)| (*k, l.to_string())).collect()
}

/// The fleet's quartiles (nearest rank) of `values`' finite ones; `None` when there are none.
pub fn quartile_cuts(values: impl Iterator<Item = f32>) -> Option<[f32; 3]> {
    let mut v: Vec<f32> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f32::total_cmp);
    let at = |q: f32| v[((v.len() - 1) as f32 * q).round() as usize];
    Some([at(0.25), at(0.5), at(0.75)])
}

/// `q1` (lowest quarter) to `q4` (highest) for `v` against [`quartile_cuts`]' `cuts`;
/// `unknown` without a value or cuts.
pub fn quarter_class(cuts: Option<[f32; 3]>, v: Option<f32>) -> &'static str {
    match (cuts, v.filter(|v| v.is_finite())) {
        (Some([a, b, c]), Some(v)) => {
            if v <= a {
                "q1"
            } else if v <= b {
                "q2"
            } else if v <= c {
                "q3"
            } else {
                "q4"
            }
        }
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_split_the_fleet_and_skip_what_is_not_a_number() {
        let cuts = quartile_cuts([4.0, 1.0, f32::NAN, 3.0, 2.0, 5.0].into_iter());
        assert_eq!(cuts, Some([2.0, 3.0, 4.0]));
        let classes: Vec<_> = [1.0, 2.5, 3.5, 9.0].iter().map(|v| quarter_class(cuts, Some(*v))).collect();
        assert_eq!(classes, ["q1", "q2", "q3", "q4"]);
        assert_eq!(quarter_class(cuts, None), "unknown");
        assert_eq!(quartile_cuts(std::iter::empty()), None);
    }
}
