//! The backtest's report: per group of series, how what the product published compares with
//! the better of the two naive forecasts (last value, seasonal naive) and with the model
//! alone, in the terms of the forecast-quality targets (share of series at or below the better
//! naive, mean q-risk relative to it, P10-P90 coverage, breach precision and recall).

use std::collections::BTreeMap;
use std::fmt::Write;

use schemas::Method;

use super::{Confusion, Scored, BREACH_WINDOWS, PUBLISHED, SLOTS};

/// One group's summary.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupSummary {
    pub group: String,
    pub series: usize,
    /// Share of series where the published q-risk is at or below the better naive's (P50, P90).
    pub at_or_below_naive: (f64, f64),
    /// Mean over series of each slot's q-risk, `[slot]` (P50, P90).
    pub mean_qrisk: Vec<(f64, f64)>,
    /// Mean over series of the better naive's q-risk (P50, P90), per series the better one.
    pub mean_best_naive: (f64, f64),
    /// Published coverage over all points, and the lowest and highest of any series.
    pub coverage: (f64, f64, f64),
    /// Model-alone coverage over all points.
    pub model_coverage: f64,
    /// Share of published target forecasts that came from each method, `[Method::ALL]`.
    pub published_share: Vec<f64>,
    /// `[slot][window]` (precision, recall, F1) of CPU > 90 breaches.
    pub breaches: Vec<Vec<(f64, f64, f64)>>,
}

fn slot_name(slot: usize) -> &'static str {
    if slot == PUBLISHED {
        "published"
    } else {
        Method::ALL[slot].name()
    }
}

fn prf(c: &Confusion) -> (f64, f64, f64) {
    let p = c.tp as f64 / (c.tp + c.fp).max(1) as f64;
    let r = c.tp as f64 / (c.tp + c.fn_).max(1) as f64;
    let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
    (p, r, f)
}

/// Summaries per group, in name order.
pub fn summarise(scored: &[Scored]) -> Vec<GroupSummary> {
    let mut groups: BTreeMap<&str, Vec<&Scored>> = BTreeMap::new();
    for s in scored.iter().filter(|s| s.slots[PUBLISHED].n > 0) {
        groups.entry(&s.group).or_default().push(s);
    }
    let lv = Method::LastValue.index();
    let sn = Method::SeasonalNaive.index();
    groups
        .into_iter()
        .map(|(group, rows)| {
            let n = rows.len() as f64;
            let best = |r: &Scored, f: fn(&super::Sums) -> f64| f(&r.slots[lv]).min(f(&r.slots[sn]));
            let below = |f: fn(&super::Sums) -> f64| rows.iter().filter(|r| f(&r.slots[PUBLISHED]) <= best(r, f) + 1e-9).count() as f64 / n;
            let mean = |slot: usize, f: fn(&super::Sums) -> f64| rows.iter().map(|r| f(&r.slots[slot])).sum::<f64>() / n;
            let mean_best = |f: fn(&super::Sums) -> f64| rows.iter().map(|r| best(r, f)).sum::<f64>() / n;
            let total = |slot: usize| rows.iter().fold((0u64, 0u64), |(c, k), r| (c + r.slots[slot].covered, k + r.slots[slot].n));
            let cov = |(c, k): (u64, u64)| c as f64 / k.max(1) as f64;
            let per_series: Vec<f64> = rows.iter().map(|r| r.slots[PUBLISHED].coverage()).collect();
            let published: u64 = rows.iter().map(|r| r.slots[PUBLISHED].published).sum();
            let mut breaches = vec![vec![(0.0, 0.0, 0.0); BREACH_WINDOWS.len()]; SLOTS];
            for (slot, row) in breaches.iter_mut().enumerate() {
                for (w, cell) in row.iter_mut().enumerate() {
                    let c = rows.iter().fold(Confusion::default(), |a, r| {
                        let b = r.breaches[slot][w];
                        Confusion { tp: a.tp + b.tp, fp: a.fp + b.fp, fn_: a.fn_ + b.fn_ }
                    });
                    *cell = prf(&c);
                }
            }
            GroupSummary {
                group: group.to_string(),
                series: rows.len(),
                at_or_below_naive: (below(super::Sums::qrisk_p50), below(super::Sums::qrisk_p90)),
                mean_qrisk: (0..SLOTS).map(|s| (mean(s, super::Sums::qrisk_p50), mean(s, super::Sums::qrisk_p90))).collect(),
                mean_best_naive: (mean_best(super::Sums::qrisk_p50), mean_best(super::Sums::qrisk_p90)),
                coverage: (
                    cov(total(PUBLISHED)),
                    per_series.iter().copied().fold(f64::INFINITY, f64::min),
                    per_series.iter().copied().fold(0.0, f64::max),
                ),
                model_coverage: cov(total(Method::Model.index())),
                published_share: Method::ALL
                    .iter()
                    .map(|m| rows.iter().map(|r| r.slots[m.index()].published).sum::<u64>() as f64 / published.max(1) as f64)
                    .collect(),
                breaches,
            }
        })
        .collect()
}

/// The summaries and every series' q-risks as markdown tables.
pub fn markdown(groups: &[GroupSummary], scored: &[Scored]) -> String {
    let mut o = String::new();
    let pct = |x: f64| format!("{:.0} %", 100.0 * x);
    let _ = writeln!(o, "| group | series | published P50 / P90 | model alone | last value | seasonal naive | better naive | vs better naive P50 / P90 | at or below better naive P50 / P90 | coverage (min-max) | model coverage |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
    for g in groups {
        let q = |s: usize| format!("{:.3} / {:.3}", g.mean_qrisk[s].0, g.mean_qrisk[s].1);
        let rel = |a: f64, b: f64| format!("{:+.1} %", 100.0 * (a / b - 1.0));
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {:.3} / {:.3} | {} / {} | {} / {} | {} ({}-{}) | {} |",
            g.group,
            g.series,
            q(PUBLISHED),
            q(Method::Model.index()),
            q(Method::LastValue.index()),
            q(Method::SeasonalNaive.index()),
            g.mean_best_naive.0,
            g.mean_best_naive.1,
            rel(g.mean_qrisk[PUBLISHED].0, g.mean_best_naive.0),
            rel(g.mean_qrisk[PUBLISHED].1, g.mean_best_naive.1),
            pct(g.at_or_below_naive.0),
            pct(g.at_or_below_naive.1),
            pct(g.coverage.0),
            pct(g.coverage.1),
            pct(g.coverage.2),
            pct(g.model_coverage),
        );
    }
    let _ = writeln!(o, "\nPublished method share and CPU > 90 % breaches (precision / recall / F1 of P90 crossing, 30 min and 8 h; `published` also counts its seasonal alerts, the value a day before a step past 30 min crossing):\n");
    let _ = writeln!(
        o,
        "| group | {} | {} |",
        Method::ALL.map(|m| m.name()).join(" | "),
        (0..SLOTS).map(|s| format!("{} 30m / 8h", slot_name(s))).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(o, "|---|{}", "---|".repeat(Method::ALL.len() + SLOTS));
    for g in groups {
        let shares: Vec<String> = g.published_share.iter().map(|s| pct(*s)).collect();
        let br: Vec<String> = g
            .breaches
            .iter()
            .map(|w| w.iter().map(|(p, r, f)| format!("{:.2}/{:.2}/{:.2}", p, r, f)).collect::<Vec<_>>().join(" ; "))
            .collect();
        let _ = writeln!(o, "| {} | {} | {} |", g.group, shares.join(" | "), br.join(" | "));
    }
    if scored.is_empty() {
        return o;
    }
    let _ = writeln!(o, "\nPer series (q-risk P50 / P90):\n");
    let _ = writeln!(o, "| series | target | {} | published method share |", (0..SLOTS).map(slot_name).collect::<Vec<_>>().join(" | "));
    let _ = writeln!(o, "|---|---|{}---|", "---|".repeat(SLOTS));
    for s in scored.iter().filter(|s| s.slots[PUBLISHED].n > 0) {
        let cells: Vec<String> = s.slots.iter().map(|x| format!("{:.3} / {:.3}", x.qrisk_p50(), x.qrisk_p90())).collect();
        let total = s.slots[PUBLISHED].published.max(1) as f64;
        let share: Vec<String> = Method::ALL
            .iter()
            .filter(|m| s.slots[m.index()].published > 0)
            .map(|m| format!("{} {}", m.name(), pct(s.slots[m.index()].published as f64 / total)))
            .collect();
        let _ = writeln!(o, "| {} | {} | {} | {} |", s.series, s.target.name(), cells.join(" | "), share.join(", "));
    }
    o
}
