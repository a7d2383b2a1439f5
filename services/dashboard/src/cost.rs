//! Cost avoidance: the original's formula with its inputs made editable and its counts taken
//! from the live snapshot.
//!
//! `prevented = #(risk >= 70) * rate + #(40 <= risk < 70) * 0.3 * rate` incidents a day;
//! `daily = prevented * cost_per_hour * hours_per_outage`; monthly = 30 days, annual = 365;
//! payback = project cost / monthly savings (months).
//!
//! The operator's assumptions persist (`settings.rs`, KV bucket `dashboard_settings`): a
//! submitted form becomes the assumptions every later visit starts from.

use serde::{Deserialize, Serialize};

/// Share of the prevention rate credited to a server at warning (40-69) risk.
pub const WARNING_WEIGHT: f64 = 0.3;

/// The form's inputs, as typed (strings, so a bad value is reported, not rejected by serde).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CostForm {
    pub cost_per_hour: Option<String>,
    pub hours_per_outage: Option<String>,
    pub prevention_rate: Option<String>,
    pub project_cost: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CostInputs {
    /// Dollars per outage hour.
    pub cost_per_hour: f64,
    pub hours_per_outage: f64,
    /// Percent of predicted incidents the team prevents (0-100).
    pub prevention_rate: f64,
    /// Dollars.
    pub project_cost: f64,
}

impl Default for CostInputs {
    /// The original's defaults.
    fn default() -> Self {
        CostInputs { cost_per_hour: 50_000.0, hours_per_outage: 2.5, prevention_rate: 85.0, project_cost: 250_000.0 }
    }
}

/// A bad input: which field, what was typed and why it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// Largest accepted value of each input.
const MAX_COST_PER_HOUR: f64 = 1e12;
const MAX_HOURS_PER_OUTAGE: f64 = 24.0 * 365.0;
const MAX_PREVENTION_RATE: f64 = 100.0;
const MAX_PROJECT_COST: f64 = 1e13;

/// Why a number is refused as an input, if it is.
fn refusal(v: f64, max: f64) -> Option<&'static str> {
    if !v.is_finite() {
        Some("must be a finite number")
    } else if v < 0.0 {
        Some("must not be negative")
    } else if v > max {
        Some("is above the allowed maximum")
    } else {
        None
    }
}

impl CostInputs {
    /// Whether every input is one the form would accept (checked on values read back from
    /// the settings bucket).
    pub fn is_valid(&self) -> bool {
        [
            (self.cost_per_hour, MAX_COST_PER_HOUR),
            (self.hours_per_outage, MAX_HOURS_PER_OUTAGE),
            (self.prevention_rate, MAX_PREVENTION_RATE),
            (self.project_cost, MAX_PROJECT_COST),
        ]
        .iter()
        .all(|&(v, max)| refusal(v, max).is_none())
    }
}

impl CostForm {
    /// Parses the inputs; blank fields take the defaults. Every bad field is reported.
    pub fn parse(&self) -> (CostInputs, Vec<FieldError>) {
        self.parse_over(&CostInputs::default())
    }

    /// Parses the inputs over `base` (the operator's saved assumptions): blank and bad fields
    /// keep `base`'s value. Every bad field is reported.
    pub fn parse_over(&self, base: &CostInputs) -> (CostInputs, Vec<FieldError>) {
        let mut errors = Vec::new();
        let mut num = |field: &'static str, raw: &Option<String>, default: f64, max: f64| -> f64 {
            let Some(raw) = raw.as_deref().map(str::trim).filter(|s| !s.is_empty()) else { return default };
            let cleaned: String = raw.chars().filter(|c| !matches!(c, ',' | '$' | '%' | '_')).collect();
            match cleaned.parse::<f64>() {
                Ok(v) => match refusal(v, max) {
                    Some(reason) => {
                        errors.push(FieldError { field, value: raw.into(), reason });
                        default
                    }
                    None => v,
                },
                Err(_) => {
                    errors.push(FieldError { field, value: raw.into(), reason: "is not a number" });
                    default
                }
            }
        };
        let inputs = CostInputs {
            cost_per_hour: num("cost_per_hour", &self.cost_per_hour, base.cost_per_hour, MAX_COST_PER_HOUR),
            hours_per_outage: num("hours_per_outage", &self.hours_per_outage, base.hours_per_outage, MAX_HOURS_PER_OUTAGE),
            prevention_rate: num("prevention_rate", &self.prevention_rate, base.prevention_rate, MAX_PREVENTION_RATE),
            project_cost: num("project_cost", &self.project_cost, base.project_cost, MAX_PROJECT_COST),
        };
        (inputs, errors)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Projection {
    pub critical_servers: u32,
    pub warning_servers: u32,
    pub prevented_per_day: f64,
    pub daily: f64,
    pub monthly: f64,
    pub annual: f64,
    /// Months to pay the project back; `None` when nothing is saved.
    pub payback_months: Option<f64>,
}

/// The projection from the count of servers at critical (>= 70) and warning (40-69) risk.
pub fn project(inputs: &CostInputs, critical_servers: u32, warning_servers: u32) -> Projection {
    let rate = inputs.prevention_rate / 100.0;
    let prevented = f64::from(critical_servers) * rate + f64::from(warning_servers) * WARNING_WEIGHT * rate;
    let daily = prevented * inputs.cost_per_hour * inputs.hours_per_outage;
    let monthly = daily * 30.0;
    Projection {
        critical_servers,
        warning_servers,
        prevented_per_day: prevented,
        daily,
        monthly,
        annual: daily * 365.0,
        payback_months: (monthly > 0.0).then(|| inputs.project_cost / monthly),
    }
}

/// Counts servers at critical risk (>= 70) and at warning risk (40-69).
pub fn count_at_risk<'a>(risks: impl IntoIterator<Item = &'a f32>) -> (u32, u32) {
    risks.into_iter().fold((0, 0), |(c, w), &r| {
        if r >= 70.0 {
            (c + 1, w)
        } else if r >= 40.0 {
            (c, w + 1)
        } else {
            (c, w)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_formula_with_defaults() {
        let p = project(&CostInputs::default(), 2, 5);
        // 2 * 0.85 + 5 * 0.3 * 0.85 = 1.7 + 1.275 = 2.975 incidents/day
        assert!((p.prevented_per_day - 2.975).abs() < 1e-9);
        assert!((p.daily - 2.975 * 50_000.0 * 2.5).abs() < 1e-6);
        assert!((p.monthly - p.daily * 30.0).abs() < 1e-6);
        assert!((p.annual - p.daily * 365.0).abs() < 1e-6);
        assert!((p.payback_months.unwrap() - 250_000.0 / p.monthly).abs() < 1e-9);
    }

    #[test]
    fn nothing_at_risk_never_pays_back() {
        let p = project(&CostInputs::default(), 0, 0);
        assert_eq!(p.daily, 0.0);
        assert_eq!(p.payback_months, None);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        let form = CostForm {
            cost_per_hour: Some("$75,000".into()),
            hours_per_outage: Some("lots".into()),
            prevention_rate: Some("150".into()),
            project_cost: Some("-3".into()),
        };
        let (inputs, errors) = form.parse();
        assert_eq!(inputs.cost_per_hour, 75_000.0);
        assert_eq!(inputs.hours_per_outage, 2.5, "bad field falls back to the default");
        let fields: Vec<_> = errors.iter().map(|e| (e.field, e.reason)).collect();
        assert_eq!(
            fields,
            [
                ("hours_per_outage", "is not a number"),
                ("prevention_rate", "is above the allowed maximum"),
                ("project_cost", "must not be negative")
            ]
        );
        assert_eq!(CostForm::default().parse(), (CostInputs::default(), vec![]));
    }

    #[test]
    fn blank_and_bad_fields_keep_the_saved_assumptions() {
        let saved = CostInputs { cost_per_hour: 1_000.0, hours_per_outage: 1.0, prevention_rate: 50.0, project_cost: 9.0 };
        let form = CostForm { prevention_rate: Some("abc".into()), project_cost: Some("12".into()), ..Default::default() };
        let (inputs, errors) = form.parse_over(&saved);
        assert_eq!(inputs, CostInputs { project_cost: 12.0, ..saved });
        assert_eq!(errors.len(), 1);
        assert!(saved.is_valid() && CostInputs::default().is_valid());
        assert!(!CostInputs { prevention_rate: 101.0, ..saved }.is_valid());
        assert!(!CostInputs { cost_per_hour: f64::NAN, ..saved }.is_valid());
        assert!(!CostInputs { hours_per_outage: -1.0, ..saved }.is_valid());
    }

    #[test]
    fn counts_use_the_original_bands() {
        assert_eq!(count_at_risk(&[70.0, 69.9, 40.0, 39.9, 100.0, f32::NAN]), (2, 2));
    }
}
