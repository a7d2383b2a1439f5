//! Host label value -> Fleetcast server name. Exists because Prometheus labels may hold any
//! text (`10.0.0.5:9100`, `web1.prod.example.com:9100`, `[::1]:9100`), while a server name must
//! be one NATS subject token and a KV key (`schemas::validate::check_server_name`), and must
//! not hold a `.`: a dotted name would become several tokens in `alerts.<state>.<server>`,
//! which the documented pattern `alerts.<state>.*` never matches.
//!
//! The rule, applied in order (documented in the service's README):
//! 1. the port is stripped: `host:9100` -> `host`, `[v6addr]:9100` -> `v6addr`;
//! 2. `.` becomes `_` (`web1.prod` -> `web1_prod`, `10.0.0.5` -> `10_0_0_5`);
//! 3. every other character outside `[A-Za-z0-9_-]` (`:`, `*`, `>`, `/`, whitespace, non-ASCII)
//!    becomes `-`;
//! 4. the result is cut to 128 bytes; an empty result is rejected.
//!
//! Reversible enough: a name reads back as its host, though `a.b` and `a_b` meet.

use schemas::validate::{check_server_name, MAX_SERVER_NAME};
use schemas::{RejectReason, ValidationError};

/// Strips a trailing `:port` (digits only) and IPv6 brackets. A bare IPv6 address
/// (`::1`, several colons, no brackets) keeps its colons, which step 3 maps to `-`.
pub fn strip_port(value: &str) -> &str {
    if let Some(rest) = value.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((addr, _)) => addr,
            None => rest,
        };
    }
    match value.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

/// The server name for a host label value (rule above).
///
/// Errors: [`RejectReason::BadServerName`] on field `label` when nothing is left of the value
/// (empty, or only a port).
pub fn server_name(label: &str, value: &str) -> Result<String, ValidationError> {
    let host = strip_port(value.trim());
    let mut name: String = host
        .chars()
        .map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-' => c,
            '.' => '_',
            _ => '-',
        })
        .collect();
    name.truncate(MAX_SERVER_NAME);
    check_server_name(&name).map_err(|e| {
        ValidationError::new(
            format!("labels.{label}"),
            format!("{value:?}"),
            RejectReason::BadServerName,
            format!("the host label must give a server name: {}", e.rule),
        )
    })?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("10.0.0.5:9100"), "10.0.0.5");
        assert_eq!(strip_port("web1"), "web1");
        assert_eq!(strip_port("[::1]:9100"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("host:http"), "host:http");
    }

    #[test]
    fn names_are_one_token() {
        for (value, want) in [
            ("localhost:9100", "localhost"),
            ("10.0.0.5:9100", "10_0_0_5"),
            ("web1.prod.example.com:9100", "web1_prod_example_com"),
            ("[fe80::1]:9100", "fe80--1"),
            ("a*b>c d", "a-b-c-d"),
            ("ppdb001", "ppdb001"),
            ("héllo", "h-llo"),
        ] {
            let name = server_name("instance", value).unwrap();
            assert_eq!(name, want, "{value}");
            assert!(!name.contains('.'));
            assert!(check_server_name(&name).is_ok());
        }
        assert_eq!(server_name("instance", &"x".repeat(300)).unwrap().len(), 128);
    }

    #[test]
    fn nothing_left_is_rejected_naming_the_label() {
        for bad in ["", ":9100", "  "] {
            let e = server_name("host", bad).unwrap_err();
            assert_eq!((e.field.as_str(), e.reason), ("labels.host", RejectReason::BadServerName), "{bad:?}");
        }
    }
}
