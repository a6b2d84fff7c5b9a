//! The credit ledger's rules: entry kinds and their signs, amount limits, and how
//! balances are shown (credits, 1 credit = $0.001, and dollars). Pure; the store
//! appends entries and derives balances.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::MAX_NANOS;

/// Nano-dollars per credit ($0.001).
pub const NANOS_PER_CREDIT: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Money in (positive).
    Topup,
    /// A billed call (negative).
    Charge,
    /// Money back (positive).
    Refund,
    /// A correction by an admin (either sign).
    Adjustment,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Topup => "topup",
            Kind::Charge => "charge",
            Kind::Refund => "refund",
            Kind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Topup, Kind::Charge, Kind::Refund, Kind::Adjustment]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// An entry to append. `amount_nanos` is the magnitude for topups, charges and
/// refunds (the sign follows the kind) and signed for adjustments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub idempotency_key: String,
    pub kind: Kind,
    pub amount_nanos: i64,
    pub reason: String,
    pub source_system: Option<String>,
    pub source_reference: Option<String>,
    pub usage_id: Option<String>,
    pub actor: String,
    pub note: Option<String>,
}

impl NewEntry {
    /// The signed amount as stored, after checking the limits.
    pub fn signed_amount(&self) -> Result<i64> {
        let a = self.amount_nanos;
        if self.idempotency_key.trim().is_empty() || self.idempotency_key.len() > 200 {
            return Err(Error::invalid(
                "idempotency_key",
                "is required (1-200 characters)",
            ));
        }
        if a.unsigned_abs() > MAX_NANOS as u64 {
            return Err(Error::invalid("amount", "exceeds $1,000,000 in one entry"));
        }
        match self.kind {
            Kind::Topup | Kind::Refund if a <= 0 => {
                Err(Error::invalid("amount", "must be greater than zero"))
            }
            Kind::Charge if a < 0 => Err(Error::invalid(
                "amount",
                "a charge is given as a non-negative cost",
            )),
            Kind::Adjustment if a == 0 => Err(Error::invalid(
                "amount",
                "an adjustment of zero changes nothing",
            )),
            Kind::Charge => Ok(-a),
            _ => Ok(a),
        }
    }
}

// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Entry {
    pub id: String,
    pub idempotency_key: String,
    pub kind: String,
    /// Signed: credits are positive, charges negative.
    pub amount_nanos: i64,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_system: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_id: Option<String>,
    pub actor: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_at: String,
}

impl Entry {
    /// Does this stored entry say the same as `new` (an idempotent replay)?
    pub fn same_as(&self, new: &NewEntry, signed: i64) -> bool {
        self.kind == new.kind.as_str()
            && self.amount_nanos == signed
            && self.reason == new.reason
            && self.source_system == new.source_system
            && self.source_reference == new.source_reference
            && self.usage_id == new.usage_id
    }
}

// A balance shown three ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Balance {
    pub nanos: i64,
    /// Whole credits, rounded toward zero; `credits_exact` keeps the fraction.
    pub credits: i64,
    pub credits_exact: String,
    pub usd: String,
}

/// `nanos` with a fixed number of decimals, exactly (no floating point).
fn decimal(nanos: i64, unit: i64, places: u32) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let unit = unit as u64;
    let frac_unit = 10u64.pow(places);
    let whole = n / unit;
    let frac = (n % unit) * frac_unit / unit;
    format!("{sign}{whole}.{frac:0width$}", width = places as usize)
}

pub fn balance(nanos: i64) -> Balance {
    Balance {
        nanos,
        credits: nanos / NANOS_PER_CREDIT,
        credits_exact: decimal(nanos, NANOS_PER_CREDIT, 6),
        usd: decimal(nanos, crate::money::NANOS_PER_USD, 9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, amount: i64) -> NewEntry {
        NewEntry {
            idempotency_key: "k".into(),
            kind,
            amount_nanos: amount,
            reason: "r".into(),
            source_system: None,
            source_reference: None,
            usage_id: None,
            actor: "a".into(),
            note: None,
        }
    }

    #[test]
    fn signs_and_limits() {
        let cases: &[(Kind, i64, Option<i64>)] = &[
            (Kind::Topup, 5, Some(5)),
            (Kind::Topup, 0, None),
            (Kind::Topup, -5, None),
            (Kind::Charge, 7, Some(-7)),
            (Kind::Charge, 0, Some(0)),
            (Kind::Charge, -7, None),
            (Kind::Refund, 3, Some(3)),
            (Kind::Adjustment, -9, Some(-9)),
            (Kind::Adjustment, 0, None),
            (Kind::Topup, MAX_NANOS + 1, None),
        ];
        for (kind, amount, want) in cases {
            assert_eq!(
                entry(*kind, *amount).signed_amount().ok(),
                *want,
                "{kind:?} {amount}"
            );
        }
        let mut e = entry(Kind::Topup, 1);
        e.idempotency_key = " ".into();
        assert!(
            e.signed_amount()
                .unwrap_err()
                .to_string()
                .contains("idempotency_key")
        );
    }

    #[test]
    fn balances_show_exactly() {
        let b = balance(1_234_567_891);
        assert_eq!(
            (b.credits, b.credits_exact.as_str(), b.usd.as_str()),
            (1234, "1234.567891", "1.234567891")
        );
        let b = balance(-1_500_000);
        assert_eq!(
            (b.credits, b.credits_exact.as_str(), b.usd.as_str()),
            (-1, "-1.500000", "-0.001500000")
        );
        assert_eq!(balance(0).usd, "0.000000000");
    }
}
