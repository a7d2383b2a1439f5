//! The forecasting methods the predictor runs side by side for every server and target, and
//! picks between by live backtest (see `services/predictor/src/domain/select.rs`). Each
//! published target forecast names the method that made it, so a reader can tell a model
//! forecast from a fallback.

use serde::{Deserialize, Serialize};

/// One forecasting method. The wire name is the snake_case variant name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The ONNX TFT (`models/tft.onnx`).
    #[default]
    Model,
    /// A flat line at the last observed value (the naive forecast; scored as a baseline, never
    /// published: one spike would become an 8-hour forecast).
    LastValue,
    /// A flat line at the recent level: the median of the last 6 steps, so one or two outlying
    /// steps do not move it.
    Level,
    /// The value 24 h before each future step (daily seasonal naive), from the server's own
    /// history; the recent level where no value a day earlier is known.
    SeasonalNaive,
    /// The recent level plus a robust linear trend (Theil–Sen slope over the last 4 h),
    /// as Prometheus' `predict_linear` would extrapolate, but robust to outliers.
    Trend,
    /// The last day's distribution: P50 its median, P10/P90 its 10th/90th percentiles. What a
    /// busy-then-quiet server returns to, where a flat line at the current value does not.
    Climatology,
    /// The average of the recent level and the climatology (curves and bands): a forecast that
    /// starts near now and leans toward the day's usual range.
    Blend,
    /// A forecast combination: each quantile curve the mean of the same quantile of the model,
    /// the recent level, the seasonal naive and the climatology (quantile averaging, "Vincentization";
    /// Lichtendahl, Grushka-Cockayne & Winkler 2013). Steadier than any one member where no
    /// single method is best for long.
    Ensemble,
}

impl Method {
    /// Every method, in a fixed order (the index used in per-method arrays).
    pub const ALL: [Method; 8] = [
        Method::Model,
        Method::LastValue,
        Method::Level,
        Method::SeasonalNaive,
        Method::Trend,
        Method::Climatology,
        Method::Blend,
        Method::Ensemble,
    ];

    /// Position in [`Method::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Model => "model",
            Method::LastValue => "last_value",
            Method::Level => "level",
            Method::SeasonalNaive => "seasonal_naive",
            Method::Trend => "trend",
            Method::Climatology => "climatology",
            Method::Blend => "blend",
            Method::Ensemble => "ensemble",
        }
    }

    /// Human label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Method::Model => "TFT model",
            Method::LastValue => "Last value",
            Method::Level => "Recent level",
            Method::SeasonalNaive => "Seasonal naive (24 h)",
            Method::Trend => "Robust trend",
            Method::Climatology => "Last day's range",
            Method::Blend => "Level + day's range",
            Method::Ensemble => "Combination",
        }
    }

    pub fn from_name(name: &str) -> Option<Method> {
        Method::ALL.iter().copied().find(|m| m.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_and_names_round_trip() {
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Method::from_name(m.name()), Some(*m));
            assert_eq!(serde_json::to_value(m).unwrap(), serde_json::json!(m.name()));
        }
    }
}
