//! The versioned price book and the pure pricing functions.
//!
//! Prices are integer nano-dollars per million tokens, one column per token kind
//! (input, output, cache read, cache write), each row with an effective time. A
//! call's cost is `ceil(Σ tokens × price / 1,000,000)` nano-dollars, rounded once
//! per call; the billed price is `ceil(cost × markup_bp / 10,000)`, never below the
//! cost. Arithmetic is in u128, so no realistic call can overflow. The shipped book
//! (`prices.json`) is generated from the `litellm` package's model cost map by
//! `tools/prices/extract.py`, with the package version recorded as its source.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One price row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub provider: String,
    pub model: String,
    /// RFC 3339; the row applies from this time until a later row for the same model.
    pub effective_from: String,
    /// Nano-dollars per million input tokens.
    pub input: i64,
    pub output: i64,
    /// Cached input read; `None` means the provider has no such price (input price applies).
    pub cache_read: Option<i64>,
    /// Cache write; `None` means the input price applies.
    pub cache_write: Option<i64>,
    /// Where the row came from (the litellm version, or a config file).
    pub source: String,
}

/// Token counts of one call, each kind counted once (cached tokens are not also
/// counted as input).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

const TOKENS_PER_MTOK: u128 = 1_000_000;
/// Basis points: 10,000 = 1.0×.
pub const BP_ONE: u32 = 10_000;
/// The default markup: 2.0×.
pub const DEFAULT_MARKUP_BP: u32 = 20_000;

fn ceil_div(n: u128, d: u128) -> u128 {
    n.div_ceil(d)
}

fn to_i64(v: u128, what: &str) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid(what, "is too large to price"))
}

/// Provider cost of one call in nano-dollars, rounded up once.
pub fn cost_nanos(p: &Price, u: Usage) -> Result<i64> {
    let price = |v: i64, field: &str| -> Result<u128> {
        u128::try_from(v)
            .map_err(|_| Error::invalid(field, format!("negative price for {}", p.model)))
    };
    let input = price(p.input, "input")?;
    let sum = u128::from(u.input) * input
        + u128::from(u.output) * price(p.output, "output")?
        + u128::from(u.cache_read) * price(p.cache_read.unwrap_or(p.input), "cache_read")?
        + u128::from(u.cache_write) * price(p.cache_write.unwrap_or(p.input), "cache_write")?;
    to_i64(ceil_div(sum, TOKENS_PER_MTOK), "tokens")
}

/// The billed price of a provider cost under a markup in basis points: rounded up
/// once, never below the cost (a markup under 1.0× is treated as 1.0×).
pub fn billed_nanos(cost: i64, markup_bp: u32) -> Result<i64> {
    let cost = u128::try_from(cost).map_err(|_| Error::invalid("cost", "must not be negative"))?;
    let billed = ceil_div(cost * u128::from(markup_bp), u128::from(BP_ONE)).max(cost);
    to_i64(billed, "cost")
}

/// The shipped price book as generated from litellm.
#[derive(Debug, Deserialize)]
struct Shipped {
    source: String,
    effective_from: String,
    prices: Vec<ShippedRow>,
}

#[derive(Debug, Deserialize)]
struct ShippedRow {
    provider: String,
    model: String,
    input: i64,
    output: i64,
    cache_read: Option<i64>,
    cache_write: Option<i64>,
}

/// All price rows, oldest first per model.
#[derive(Debug, Clone, Default)]
pub struct PriceBook {
    rows: Vec<Price>,
}

impl PriceBook {
    /// The book that ships with this binary.
    pub fn shipped() -> Result<PriceBook> {
        let s: Shipped = serde_json::from_str(include_str!("prices.json"))
            .map_err(|e| Error::Internal(format!("shipped price book: {e}")))?;
        let rows = s
            .prices
            .into_iter()
            .map(|r| Price {
                provider: r.provider,
                model: r.model,
                effective_from: s.effective_from.clone(),
                input: r.input,
                output: r.output,
                cache_read: r.cache_read,
                cache_write: r.cache_write,
                source: s.source.clone(),
            })
            .collect();
        PriceBook::from_rows(rows)
    }

    /// A book from rows; refuses negative prices and bad times.
    pub fn from_rows(rows: Vec<Price>) -> Result<PriceBook> {
        let mut book = PriceBook::default();
        book.extend(rows)?;
        Ok(book)
    }

    /// Adds or replaces rows (same provider, model and effective time replaces).
    pub fn extend(&mut self, rows: Vec<Price>) -> Result<()> {
        for r in rows {
            for (field, v) in [
                ("input", Some(r.input)),
                ("output", Some(r.output)),
                ("cache_read", r.cache_read),
                ("cache_write", r.cache_write),
            ] {
                if v.is_some_and(|v| v < 0) {
                    return Err(Error::invalid(
                        format!("price {}/{}: {field}", r.provider, r.model),
                        "must not be negative",
                    ));
                }
            }
            let Some(t) = crate::clock::parse_time(&r.effective_from) else {
                return Err(Error::invalid(
                    format!("price {}/{}: effective_from", r.provider, r.model),
                    "is not an RFC 3339 time",
                ));
            };
            let r = Price {
                effective_from: crate::clock::fmt_time(t),
                ..r
            };
            self.rows.retain(|x| {
                !(x.provider == r.provider
                    && x.model == r.model
                    && x.effective_from == r.effective_from)
            });
            self.rows.push(r);
        }
        self.rows.sort_by(|a, b| {
            (
                a.provider.as_str(),
                a.model.as_str(),
                a.effective_from.as_str(),
            )
                .cmp(&(
                    b.provider.as_str(),
                    b.model.as_str(),
                    b.effective_from.as_str(),
                ))
        });
        Ok(())
    }

    /// The row in effect for a model at a time (RFC 3339 text, as stored).
    pub fn lookup(&self, provider: &str, model: &str, at: &str) -> Option<&Price> {
        self.rows
            .iter()
            .filter(|r| {
                r.provider == provider && r.model == model && r.effective_from.as_str() <= at
            })
            .max_by(|a, b| a.effective_from.cmp(&b.effective_from))
    }

    pub fn rows(&self) -> &[Price] {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(input: i64, output: i64, cache_read: Option<i64>, cache_write: Option<i64>) -> Price {
        Price {
            provider: "p".into(),
            model: "m".into(),
            effective_from: "2026-01-01T00:00:00.000Z".into(),
            input,
            output,
            cache_read,
            cache_write,
            source: "test".into(),
        }
    }

    #[test]
    fn cost_table() {
        // $3 / $15 per Mtok, cache read $0.30, cache write $3.75 (Claude Sonnet's list prices).
        let sonnet = price(
            3_000_000_000,
            15_000_000_000,
            Some(300_000_000),
            Some(3_750_000_000),
        );
        let u = |i, o, r, w| Usage {
            input: i,
            output: o,
            cache_read: r,
            cache_write: w,
        };
        let cases: &[(Price, Usage, i64)] = &[
            (sonnet.clone(), u(0, 0, 0, 0), 0),
            (sonnet.clone(), u(1_000_000, 0, 0, 0), 3_000_000_000),
            (sonnet.clone(), u(0, 1_000_000, 0, 0), 15_000_000_000),
            (sonnet.clone(), u(1, 0, 0, 0), 3_000),
            (
                sonnet.clone(),
                u(1000, 500, 2000, 100),
                3_000_000 + 7_500_000 + 600_000 + 375_000,
            ),
            // DeepSeek input $0.28/Mtok: 7 tokens = 1,960 nanos exactly.
            (
                price(280_000_000, 420_000_000, None, None),
                u(7, 0, 0, 0),
                1_960,
            ),
            // A fraction of a nano rounds up once per call: 1 token at 1 nano/Mtok.
            (price(1, 1, None, None), u(1, 1, 0, 0), 1),
            (price(1, 1, None, None), u(1_000_001, 0, 0, 0), 2),
            // Without cache prices, cached tokens cost the input price.
            (
                price(1_000_000_000, 0, None, None),
                u(0, 0, 1_000_000, 1_000_000),
                2_000_000_000,
            ),
        ];
        for (p, usage, want) in cases {
            assert_eq!(cost_nanos(p, *usage).unwrap(), *want, "{usage:?}");
        }
        let huge = Usage {
            input: u64::MAX,
            output: u64::MAX,
            cache_read: 0,
            cache_write: 0,
        };
        assert!(
            cost_nanos(&sonnet, huge).is_err(),
            "overflow is an error, not a wrap"
        );
    }

    #[test]
    fn billing_rounds_up_once_and_never_below_cost() {
        assert_eq!(billed_nanos(0, DEFAULT_MARKUP_BP).unwrap(), 0);
        assert_eq!(billed_nanos(1_000, DEFAULT_MARKUP_BP).unwrap(), 2_000);
        assert_eq!(billed_nanos(3, 15_000).unwrap(), 5, "4.5 rounds up to 5");
        assert_eq!(
            billed_nanos(1_000, 5_000).unwrap(),
            1_000,
            "a markup under 1x bills the cost"
        );
        assert!(billed_nanos(-1, BP_ONE).is_err());
    }

    #[test]
    fn shipped_book_has_the_default_ladder_and_looks_up_by_time() {
        let book = PriceBook::shipped().unwrap();
        for (provider, model) in [
            ("deepseek", "deepseek-chat"),
            ("gemini", "gemini-2.5-flash"),
            ("gemini", "gemini-2.5-pro"),
            ("openai", "gpt-5-codex"),
            ("anthropic", "claude-sonnet-4-6"),
            ("anthropic", "claude-opus-4-6"),
        ] {
            let p = book.lookup(provider, model, "2027-01-01T00:00:00.000Z");
            let p = p.unwrap_or_else(|| panic!("{provider}/{model} priced"));
            assert!(
                p.input > 0 && p.output > 0 && p.source.starts_with("litellm "),
                "{p:?}"
            );
        }
        assert!(
            book.lookup("anthropic", "claude-opus-4-6", "2020-01-01T00:00:00.000Z")
                .is_none(),
            "not before it took effect"
        );
        let mut book = book;
        let mut newer = book
            .lookup("anthropic", "claude-opus-4-6", "2027-01-01T00:00:00.000Z")
            .unwrap()
            .clone();
        newer.effective_from = "2027-06-01T00:00:00Z".into();
        newer.input = 1;
        newer.source = "config".into();
        book.extend(vec![newer]).unwrap();
        assert_eq!(
            book.lookup("anthropic", "claude-opus-4-6", "2027-01-01T00:00:00.000Z")
                .unwrap()
                .input,
            5_000_000_000
        );
        assert_eq!(
            book.lookup("anthropic", "claude-opus-4-6", "2027-07-01T00:00:00.000Z")
                .unwrap()
                .input,
            1,
            "a later row wins after its time, history is kept"
        );
        let bad = PriceBook::from_rows(vec![price(-1, 0, None, None)])
            .unwrap_err()
            .to_string();
        assert!(bad.contains("input") && bad.contains("negative"), "{bad}");
    }
}
