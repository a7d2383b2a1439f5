//! Server profiles and the one function that detects a profile from a server's name.
//!
//! The original system had seven detectors that disagreed; every Fleetcast service calls
//! [`Profile::detect`] and nothing else.

use serde::{Deserialize, Serialize};

/// What kind of workload a server runs. It shapes the generator's metrics, the model's
/// static input and the risk thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    MlCompute,
    Database,
    WebApi,
    ConductorMgmt,
    DataIngest,
    RiskAnalytics,
    Generic,
}

/// Name fragments per profile, checked in this order against the lower-cased name;
/// the first profile with a matching fragment wins.
const PATTERNS: [(Profile, &[&str]); 6] = [
    (Profile::MlCompute, &["ppml", "ppgpu", "cptrain", "ml-node-"]),
    (Profile::Database, &["ppdb", "psdb", "oracle", "mongo", "postgres", "mysql"]),
    (Profile::WebApi, &["ppweb", "ppapi", "nginx", "tomcat", "api-server-"]),
    (Profile::ConductorMgmt, &["ppcon", "conductor", "egomgmt", "maestro"]),
    (Profile::DataIngest, &["ppetl", "ppkafka", "stream", "spark", "flink"]),
    (Profile::RiskAnalytics, &["pprisk", "varrisk", "credit", "quant"]),
];

impl Profile {
    /// All profiles, in the model's embedding order (index = `as_index`).
    pub const ALL: [Profile; 7] = [
        Profile::MlCompute,
        Profile::Database,
        Profile::WebApi,
        Profile::ConductorMgmt,
        Profile::DataIngest,
        Profile::RiskAnalytics,
        Profile::Generic,
    ];

    /// Detects the profile from a server name; unknown names are `Generic`, never an error.
    pub fn detect(server: &str) -> Profile {
        let lower = server.to_ascii_lowercase();
        PATTERNS.iter().find(|(_, frags)| frags.iter().any(|f| lower.contains(f))).map(|(p, _)| *p).unwrap_or(Profile::Generic)
    }

    /// The profile a record declares, or the one detected from its name.
    pub fn resolve(declared: Option<Profile>, server: &str) -> Profile {
        declared.unwrap_or_else(|| Profile::detect(server))
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::MlCompute => "ml_compute",
            Profile::Database => "database",
            Profile::WebApi => "web_api",
            Profile::ConductorMgmt => "conductor_mgmt",
            Profile::DataIngest => "data_ingest",
            Profile::RiskAnalytics => "risk_analytics",
            Profile::Generic => "generic",
        }
    }

    /// Display label for the dashboard.
    pub fn label(self) -> &'static str {
        match self {
            Profile::MlCompute => "ML compute",
            Profile::Database => "Database",
            Profile::WebApi => "Web / API",
            Profile::ConductorMgmt => "Conductor",
            Profile::DataIngest => "Data ingest",
            Profile::RiskAnalytics => "Risk analytics",
            Profile::Generic => "Generic",
        }
    }

    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.iter().copied().find(|p| p.name() == name)
    }

    /// Index into [`Profile::ALL`]; the model's static categorical input.
    pub fn as_index(self) -> usize {
        Profile::ALL.iter().position(|p| *p == self).unwrap_or(Profile::ALL.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_every_documented_pattern() {
        let cases = [
            ("ppml0001", Profile::MlCompute),
            ("ML-NODE-3", Profile::MlCompute),
            ("ppdb001", Profile::Database),
            ("prod-postgres-7", Profile::Database),
            ("ppweb012", Profile::WebApi),
            ("api-server-2", Profile::WebApi),
            ("ppcon01", Profile::ConductorMgmt),
            ("ppetl003", Profile::DataIngest),
            ("spark-worker", Profile::DataIngest),
            ("pprisk001", Profile::RiskAnalytics),
            ("ppgen001", Profile::Generic),
            ("", Profile::Generic),
        ];
        for (name, want) in cases {
            assert_eq!(Profile::detect(name), want, "{name}");
        }
    }

    #[test]
    fn declared_profile_wins() {
        assert_eq!(Profile::resolve(Some(Profile::Database), "ppweb001"), Profile::Database);
        assert_eq!(Profile::resolve(None, "ppweb001"), Profile::WebApi);
    }

    #[test]
    fn names_round_trip() {
        for p in Profile::ALL {
            assert_eq!(Profile::from_name(p.name()), Some(p));
            assert_eq!(Profile::ALL[p.as_index()], p);
        }
    }
}
