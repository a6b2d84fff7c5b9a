//! Money: integer nano-dollars (10^-9 USD) everywhere; conversions from the float
//! dollars that clients and vault-mcp report happen here, once, with one rule.

use crate::error::{Error, Result};

pub const NANOS_PER_USD: i64 = 1_000_000_000;

/// Largest amount accepted from a client in one field: $1,000,000.
pub const MAX_NANOS: i64 = 1_000_000 * NANOS_PER_USD;

/// Float dollars → nano-dollars, rounded half away from zero (so 0.1 + 0.2,
/// which is 0.30000000000000004 in binary, becomes exactly 300,000,000).
pub fn usd_to_nanos(field: &str, usd: f64) -> Result<i64> {
    if !usd.is_finite() {
        return Err(Error::invalid(field, "must be a finite number"));
    }
    if usd < 0.0 {
        return Err(Error::invalid(field, "must not be negative"));
    }
    let nanos = (usd * NANOS_PER_USD as f64).round();
    if nanos > MAX_NANOS as f64 {
        return Err(Error::invalid(field, "exceeds $1,000,000"));
    }
    Ok(nanos as i64)
}

/// Checks a nano-dollar amount given by a client.
pub fn check_nanos(field: &str, nanos: i64) -> Result<i64> {
    if nanos < 0 {
        return Err(Error::invalid(field, "must not be negative"));
    }
    if nanos > MAX_NANOS {
        return Err(Error::invalid(field, "exceeds $1,000,000 (1e15 nanos)"));
    }
    Ok(nanos)
}

/// `$1.2345` with four decimals, for short text renderings.
pub fn fmt_usd(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let cents_e2 = (n + 50_000) / 100_000; // ten-thousandths of a dollar, rounded
    format!("{sign}${}.{:04}", cents_e2 / 10_000, cents_e2 % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let cases: &[(f64, i64)] = &[
            (0.0, 0),
            (0.1 + 0.2, 300_000_000),
            (1.0, 1_000_000_000),
            (0.000_000_001, 1),
            (0.000_000_000_4, 0),
            (0.000_000_000_5, 1),
            (19.99, 19_990_000_000),
        ];
        for (usd, nanos) in cases {
            assert_eq!(usd_to_nanos("cost_usd", *usd).unwrap(), *nanos, "{usd}");
        }
        for bad in [-0.01, f64::NAN, f64::INFINITY, 2e6] {
            assert!(usd_to_nanos("cost_usd", bad).is_err(), "{bad}");
        }
        assert!(check_nanos("x", -1).is_err());
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_usd(0), "$0.0000");
        assert_eq!(fmt_usd(123_456_789), "$0.1235");
        assert_eq!(fmt_usd(20 * NANOS_PER_USD), "$20.0000");
        assert_eq!(fmt_usd(-1_500_000_000), "-$1.5000");
    }
}
