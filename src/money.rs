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

/// Exact decimal dollars (`"20"`, `"0.15"`, `"3.000000001"`) → nano-dollars,
/// without floating point. At most nine decimals; not negative; at most $1,000,000
/// unless `max` says otherwise.
pub fn parse_usd(field: &str, text: &str) -> Result<i64> {
    let t = text.trim().trim_start_matches('$');
    let bad = || {
        Error::invalid(
            field,
            format!("{text:?} is not a dollar amount such as \"20\" or \"0.15\""),
        )
    };
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > 9 {
        return Err(Error::invalid(
            field,
            "has more than nine decimals (a nano-dollar is the smallest unit)",
        ));
    }
    if whole.len() > 7 {
        return Err(Error::invalid(field, "exceeds $1,000,000"));
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let f: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    let nanos = w * NANOS_PER_USD + f;
    if nanos > MAX_NANOS {
        return Err(Error::invalid(field, "exceeds $1,000,000"));
    }
    Ok(nanos)
}

/// Nano-dollars as exact decimal dollars (`"20"`, `"0.15"`), the inverse of `parse_usd`.
pub fn usd_text(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (w, f) = (n / NANOS_PER_USD as u64, n % NANOS_PER_USD as u64);
    if f == 0 {
        format!("{sign}{w}")
    } else {
        let frac = format!("{f:09}");
        format!("{sign}{w}.{}", frac.trim_end_matches('0'))
    }
}

/// A provider-reported dollar amount as decimal text (`"0.00012"`, `"1.2e-5"`, the
/// JSON number or header a provider sent) → nano-dollars, rounded **up** to the next
/// nano-dollar, exactly (no floating point: the text's decimal value is what the
/// provider meant). `None` when the text is not a non-negative number or exceeds
/// [`MAX_NANOS`].
pub fn reported_usd_to_nanos_ceil(text: &str) -> Option<i64> {
    let t = text.trim();
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().ok()?),
        None => (t, 0),
    };
    let mantissa = mantissa.strip_prefix('+').unwrap_or(mantissa);
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // All digits, with the decimal point moved by the exponent: the value is
    // digits × 10^(point - digits.len()), and nanos are that × 10^9.
    let digits: Vec<u8> = whole
        .bytes()
        .chain(frac.bytes())
        .map(|b| b - b'0')
        .collect();
    let point = i64::try_from(whole.len()).ok()? + i64::from(exp) + 9;
    let mut nanos: i64 = 0;
    let mut rest_nonzero = false;
    for (i, d) in digits.iter().enumerate() {
        if (i as i64) < point {
            nanos = nanos.checked_mul(10)?.checked_add(i64::from(*d))?;
            if nanos > MAX_NANOS {
                return None;
            }
        } else if *d != 0 {
            rest_nonzero = true;
        }
    }
    // Digits run out before the point: pad with zeros.
    for _ in (digits.len() as i64)..point.max(0) {
        nanos = nanos.checked_mul(10)?;
        if nanos > MAX_NANOS {
            return None;
        }
    }
    if rest_nonzero {
        nanos += 1;
    }
    (nanos <= MAX_NANOS).then_some(nanos)
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
    if n != 0 && n < 50_000 {
        // Below half a ten-thousandth the rounded form would read "$0.0000" for a cost
        // that is not zero (a cheap model's call): show the exact nanos instead.
        let digits = format!("{n:09}");
        return format!("{sign}$0.{}", digits.trim_end_matches('0'));
    }
    let cents_e2 = (n + 50_000) / 100_000; // ten-thousandths of a dollar, rounded
    format!("{sign}${}.{:04}", cents_e2 / 10_000, cents_e2 % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_cost_rounds_up_exactly() {
        let cases: &[(&str, Option<i64>)] = &[
            ("0", Some(0)),
            ("0.3", Some(300_000_000)),
            ("0.00012", Some(120_000)),
            ("1.2e-5", Some(12_000)),
            ("1.5E2", Some(150_000_000_000)),
            ("0.0000000001", Some(1)),
            ("0.0000000010000001", Some(2)),
            ("3.000000001", Some(3_000_000_001)),
            ("1e-30", Some(1)),
            ("1000000", Some(MAX_NANOS)),
            ("1000000.0000000001", None),
            ("1e300", None),
            ("-0.1", None),
            ("", None),
            ("abc", None),
            ("1.2.3", None),
        ];
        for (t, want) in cases {
            assert_eq!(reported_usd_to_nanos_ceil(t), *want, "{t}");
        }
    }

    #[test]
    fn exact_dollar_text() {
        let ok: &[(&str, i64)] = &[
            ("20", 20_000_000_000),
            ("$20.00", 20_000_000_000),
            ("0.15", 150_000_000),
            (".5", 500_000_000),
            ("3.000000001", 3_000_000_001),
            ("1000000", MAX_NANOS),
            ("0", 0),
        ];
        for (t, n) in ok {
            assert_eq!(parse_usd("f", t).unwrap(), *n, "{t}");
            assert_eq!(parse_usd("f", &usd_text(*n)).unwrap(), *n, "round trip {t}");
        }
        for t in [
            "",
            ".",
            "-1",
            "1e3",
            "0.0000000001",
            "1000000.01",
            "abc",
            "1.2.3",
            "99999999",
        ] {
            let e = parse_usd("daily_halt_usd", t).unwrap_err().to_string();
            assert!(e.contains("daily_halt_usd"), "{t}: {e}");
        }
        assert_eq!(usd_text(150_000_000), "0.15");
        assert_eq!(usd_text(-2_500_000_000), "-2.5");
    }

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
        assert_eq!(
            fmt_usd(30_000),
            "$0.00003",
            "sub-ten-thousandth costs are not shown as zero"
        );
        assert_eq!(fmt_usd(1), "$0.000000001");
        assert_eq!(fmt_usd(-49_999), "-$0.000049999");
        assert_eq!(fmt_usd(50_000), "$0.0001");
    }
}
