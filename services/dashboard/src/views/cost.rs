//! Cost avoidance: the original's inputs as a GET form (bookmarkable), projections computed
//! from the live snapshot's servers at critical and warning risk.

use askama::Template;

use crate::cost::{self, CostForm, CostInputs, FieldError, Projection};
use crate::format;
use crate::state::Latest;

use super::Stamp;

#[derive(Template)]
#[template(path = "cost_controls.html")]
pub struct CostControls {
    pub cost_per_hour: String,
    pub hours_per_outage: String,
    pub prevention_rate: String,
    pub project_cost: String,
    pub errors: Vec<FieldError>,
    /// The session's CSRF token, echoed by the form's POST (`auth.rs`).
    pub csrf: String,
}

pub fn controls(form: &CostForm, inputs: &CostInputs, errors: Vec<FieldError>, csrf: &str) -> CostControls {
    let shown = |raw: &Option<String>, v: f64| raw.clone().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| format!("{v}"));
    CostControls {
        cost_per_hour: shown(&form.cost_per_hour, inputs.cost_per_hour),
        hours_per_outage: shown(&form.hours_per_outage, inputs.hours_per_outage),
        prevention_rate: shown(&form.prevention_rate, inputs.prevention_rate),
        project_cost: shown(&form.project_cost, inputs.project_cost),
        errors,
        csrf: csrf.to_string(),
    }
}

#[derive(Template)]
#[template(path = "cost_live.html")]
pub struct CostLive {
    pub stamp: Option<Stamp>,
    pub critical: u32,
    pub warning: u32,
    pub prevented: String,
    pub daily: String,
    pub monthly: String,
    pub annual: String,
    /// Daily, monthly and annual to the dollar, for the cards' tooltips.
    pub exact: [String; 3],
    pub payback: String,
    pub rate: String,
}

/// The payback period in the unit that reads best: hours under a day (a large fleet's
/// avoided cost repays the project within hours, which read "0 days"), days under a month
/// (30 days), months above.
fn payback_text(months: Option<f64>) -> String {
    let Some(months) = months else { return "never (nothing at risk now)".into() };
    let days = months * 30.0;
    let (hours, minutes) = (days * 24.0, days * 24.0 * 60.0);
    if minutes < 1.0 {
        "under a minute".into()
    } else if hours < 1.0 {
        format!("{minutes:.0} min")
    } else if days < 1.0 {
        format!("{hours:.1} hours")
    } else if months < 1.0 {
        format!("{days:.0} days")
    } else {
        format!("{months:.1} months")
    }
}

pub fn build(latest: Option<&Latest>, inputs: &CostInputs) -> CostLive {
    let (critical, warning) = latest.map(|l| cost::count_at_risk(l.snapshot.servers.iter().map(|s| &s.risk))).unwrap_or((0, 0));
    let p: Projection = cost::project(inputs, critical, warning);
    CostLive {
        stamp: latest.map(Stamp::of),
        critical,
        warning,
        prevented: format!("{:.2}", p.prevented_per_day),
        daily: format::money_short(p.daily),
        monthly: format::money_short(p.monthly),
        annual: format::money_short(p.annual),
        exact: [p.daily, p.monthly, p.annual].map(format::money),
        payback: payback_text(p.payback_months),
        rate: format!("{}", inputs.prevention_rate),
    }
}

#[cfg(test)]
mod tests {
    use super::payback_text;

    #[test]
    fn payback_reads_in_hours_days_or_months() {
        // 250,000 of project cost against 1,073,125 a day (an operator's `just up`): 5.6 hours.
        assert_eq!(payback_text(Some(250_000.0 / (1_073_125.0 * 30.0))), "5.6 hours");
        assert_eq!(payback_text(Some(0.5)), "15 days");
        assert_eq!(payback_text(Some(250_000.0 / (251_153_750.0 * 30.0))), "1 min");
        assert_eq!(payback_text(Some(1e-7)), "under a minute");
        assert_eq!(payback_text(Some(2.25)), "2.2 months");
        assert_eq!(payback_text(None), "never (nothing at risk now)");
    }
}
