//! Bundles: RFC 8785 (JSON Canonicalization Scheme) text of a manifest and its
//! SHA-256, which identifies a promoted version. Pure functions, no I/O.
//!
//! JCS: object members sorted by their names' UTF-16 code units, no whitespace,
//! strings escaped as ECMAScript's `JSON.stringify` does, numbers in
//! ECMAScript's shortest round-trip form (`1e+21`, `1e-7`, `0.1`, `-0`→`0`).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical text of `v`.
pub fn canonical(v: &Value) -> String {
    let mut out = String::new();
    write(v, &mut out);
    out
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The canonical bytes of a manifest and their hash.
pub fn seal(manifest: &Value) -> (Vec<u8>, String) {
    let bytes = canonical(manifest).into_bytes();
    let hash = sha256_hex(&bytes);
    (bytes, hash)
}

fn write(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                out.push_str(&u.to_string());
            } else {
                out.push_str(&es_number(n.as_f64().unwrap_or(0.0)));
            }
        }
        Value::String(s) => string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(k, out);
                out.push(':');
                if let Some(x) = m.get(k) {
                    write(x, out);
                }
            }
            out.push('}');
        }
    }
}

fn string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// ECMAScript Number::toString for a finite double.
fn es_number(f: f64) -> String {
    if f == 0.0 || !f.is_finite() {
        // JSON has no NaN or infinity; -0 serialises as 0.
        return "0".into();
    }
    let neg = f < 0.0;
    // `{:e}` gives the shortest digits that round-trip: "1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let k = digits.len() as i64;
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e >= 0 { "+" } else { "-" };
        if k == 1 {
            format!("{digits}e{sign}{}", e.abs())
        } else {
            format!("{}.{}e{sign}{}", &digits[..1], &digits[1..], e.abs())
        }
    };
    if neg { format!("-{body}") } else { body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_follow_ecmascript() {
        let cases = [
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
            (4.5e-10, "4.5e-10"),
            (1.5e300, "1.5e+300"),
            (-0.0, "0"),
            (333_333_333.333_333_3, "333333333.3333333"),
        ];
        for (f, want) in cases {
            assert_eq!(es_number(f), want, "{f}");
        }
    }

    #[test]
    fn rfc8785_example_shapes() {
        // Keys sort by UTF-16 code units (U+1F600 sorts before U+FB33 there, not in UTF-8).
        let v = json!({"b": [1, 2.5, true, null], "a": {"z": "x\ny\u{1}", "\u{FB33}": 1, "\u{1F600}": 2}, "": 0});
        assert_eq!(
            canonical(&v),
            "{\"\":0,\"a\":{\"z\":\"x\\ny\\u0001\",\"\u{1F600}\":2,\"\u{FB33}\":1},\"b\":[1,2.5,true,null]}"
        );
    }

    #[test]
    fn whitespace_and_order_do_not_change_the_hash() {
        let a: Value = serde_json::from_str("{ \"x\": 1, \"y\": [ 1, 2 ] }").unwrap();
        let b: Value = serde_json::from_str("{\"y\":[1,2],\n\"x\":1}").unwrap();
        assert_eq!(seal(&a).1, seal(&b).1);
        assert_eq!(seal(&a).1.len(), 64);
    }
}
