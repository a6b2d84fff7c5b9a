//! Bundles: RFC 8785 (JSON Canonicalization Scheme) text of a manifest and its
//! SHA-256, which identifies a promoted version. Pure functions, no I/O.
//!
//! JCS: object members sorted by their names' UTF-16 code units, no whitespace,
//! strings escaped as ECMAScript's `JSON.stringify` does, numbers in
//! ECMAScript's shortest round-trip form (`1e+21`, `1e-7`, `0.1`, `-0`→`0`).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical text of `v`: the same RFC 8785 writer that hashes checkpoints.
pub fn canonical(v: &Value) -> String {
    crate::checkpoints::canonical_json(v)
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
            assert_eq!(canonical(&json!(f)), want, "{f}");
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
