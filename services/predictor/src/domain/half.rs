//! Half floats (IEEE 754 binary16) for the two stores that are most of a server's memory: the
//! window's long tier (`tail.rs`) and pending forecasts (`accuracy.rs`). At 100,000
//! servers in one predictor (issue 14) every byte per value is 100 KB per series step; what
//! these stores feed (the statistical methods, q-risk scoring) needs three significant digits,
//! not seven. A half float keeps 11 significant bits: within 0.05 % of the value.

/// Largest finite half float.
pub const MAX: f32 = 65504.0;

/// Relative precision of a [`pack`]ed value: within `PRECISION * |v|` of `v` (half a unit in
/// the last of 11 significant bits; for |v| >= 6.1e-5, the smallest normal half float).
pub const PRECISION: f32 = 1.0 / 2048.0;

/// Half-float NaN: an absent value.
pub const NAN: u16 = 0x7e00;

/// `v` as a half float: within 0.05 %; finite values past ±[`MAX`] are clamped to it (a half
/// float would make them infinite), NaN stays NaN.
pub fn pack(v: f32) -> u16 {
    half::f16::from_f32(if v.is_finite() { v.clamp(-MAX, MAX) } else { v }).to_bits()
}

/// The `f32` of a [`pack`]ed value (exact: every half float is an `f32`).
pub fn unpack(bits: u16) -> f32 {
    half::f16::from_bits(bits).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_half_a_unit_in_the_last_place_and_never_infinite() {
        for v in [0.0_f32, 0.3, 1.5, 39.0, 41.0, 73.5, 89.37, 99.99, 1234.567, 65504.0] {
            let back = unpack(pack(v));
            assert!((back - v).abs() <= v.abs() * PRECISION, "{v} -> {back}");
        }
        assert_eq!(unpack(pack(1e5)), MAX, "past the range: clamped, not infinite");
        assert_eq!(unpack(pack(-1e9)), -MAX);
        assert!(unpack(pack(f32::NAN)).is_nan() && unpack(NAN).is_nan());
    }
}
