//! Number, time and URL formatting shared by every view, so a value reads the same everywhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use schemas::metric::Unit;
use schemas::Target;

/// A value with its unit, e.g. `82.4%`, `120.5 MB/s`, `7.90`; `—` when unknown or not finite.
pub fn value(unit: Unit, v: Option<f32>) -> String {
    match v {
        Some(v) if v.is_finite() => match unit {
            Unit::Percent => format!("{v:.1}%"),
            Unit::MegabytesPerSecond => format!("{v:.1} MB/s"),
            Unit::Count => format!("{v:.0}"),
            Unit::Load => format!("{v:.2}"),
            Unit::Days => format!("{v:.0} d"),
        },
        _ => "—".to_string(),
    }
}

pub fn target_value(t: Target, v: Option<f32>) -> String {
    value(t.unit(), v)
}

/// A 0-1 probability as a percentage with no decimals (`37%`).
pub fn prob(p: f32) -> String {
    if p.is_finite() {
        format!("{:.0}%", (p * 100.0).clamp(0.0, 100.0))
    } else {
        "—".into()
    }
}

/// A 0-100 risk score, one decimal.
pub fn risk(r: f32) -> String {
    if r.is_finite() {
        format!("{r:.1}")
    } else {
        "—".into()
    }
}

/// A duration in words: `45 s`, `12 min`, `2 h 05 min`, `3 d 4 h`.
pub fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 {
        format!("{} min", s / 60)
    } else if s < 86_400 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// Minutes ahead as "in 35 min" / "in 2 h 05 min".
pub fn ahead(minutes: u32) -> String {
    format!("in {}", span(Duration::from_secs(u64::from(minutes) * 60)))
}

/// Unix milliseconds as `2026-11-26 13:07:00 UTC`.
pub fn utc_ms(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => utc(UNIX_EPOCH + Duration::from_millis(ms)),
        Err(_) => "—".into(),
    }
}

pub fn utc(t: SystemTime) -> String {
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // `2026-11-26T13:07:00Z` -> `2026-11-26 13:07:00 UTC`
    s.trim_end_matches('Z').replacen('T', " ", 1) + " UTC"
}

/// `HH:MM` of Unix milliseconds (UTC), for chart axes.
pub fn hhmm_ms(ms: i64) -> String {
    let full = utc_ms(ms);
    full.get(11..16).map(str::to_string).unwrap_or(full)
}

/// [`money`] for a card: exact below ten million, else in millions, billions or trillions
/// with one decimal (`$251.2 M`), which a card's width holds; the exact figure goes in the
/// card's tooltip.
pub fn money_short(v: f64) -> String {
    const UNITS: [(f64, &str); 3] = [(1e12, "T"), (1e9, "B"), (1e6, "M")];
    if !v.is_finite() || v.abs() < 1e7 {
        return money(v);
    }
    let (scale, unit) = UNITS.iter().copied().find(|(s, _)| v.abs() >= *s).unwrap_or((1e6, "M"));
    format!("{}${:.1} {unit}", if v < 0.0 { "-" } else { "" }, v.abs() / scale)
}

/// Whole dollars with thousands separators: `$1,234,567`.
pub fn money(v: f64) -> String {
    if !v.is_finite() {
        return "—".into();
    }
    let neg = v < 0.0;
    let digits = format!("{:.0}", v.abs());
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 2);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}${out}", if neg { "-" } else { "" })
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved bytes).
pub fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Escapes text for HTML outside templates (templates escape by themselves).
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The dashboard URL of one server.
pub fn server_url(name: &str) -> String {
    format!("/servers/{}", url_component(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_carry_units_and_unknowns_show_a_dash() {
        assert_eq!(value(Unit::Percent, Some(82.44)), "82.4%");
        assert_eq!(value(Unit::MegabytesPerSecond, Some(120.0)), "120.0 MB/s");
        assert_eq!(value(Unit::Load, Some(7.9)), "7.90");
        assert_eq!(value(Unit::Percent, None), "—");
        assert_eq!(value(Unit::Percent, Some(f32::NAN)), "—");
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(Duration::from_secs(45)), "45 s");
        assert_eq!(span(Duration::from_secs(12 * 60 + 5)), "12 min");
        assert_eq!(span(Duration::from_secs(2 * 3600 + 5 * 60)), "2 h 05 min");
        assert_eq!(span(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3 d 4 h");
        assert_eq!(ahead(35), "in 35 min");
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(utc_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_ms(1_764_162_420_000), "2025-11-26 13:07:00 UTC");
        assert_eq!(hhmm_ms(1_764_162_420_000), "13:07");
        assert_eq!(utc_ms(-5), "—");
    }

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(0.0), "$0");
        assert_eq!(money(1_234_567.4), "$1,234,567");
        assert_eq!(money(-50_000.0), "-$50,000");
        assert_eq!(money(999.0), "$999");
        assert_eq!(money_short(9_999_999.0), "$9,999,999");
        assert_eq!(money_short(251_153_750.0), "$251.2 M");
        assert_eq!(money_short(91_671_118_750.0), "$91.7 B");
        assert_eq!(money_short(-3.2e12), "-$3.2 T");
    }

    #[test]
    fn urls_are_encoded() {
        assert_eq!(server_url("ppweb001"), "/servers/ppweb001");
        assert_eq!(server_url("<script>a b"), "/servers/%3Cscript%3Ea%20b");
        assert_eq!(prob(0.374), "37%");
    }
}
