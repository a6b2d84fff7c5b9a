//! Redaction of secrets from transcripts at ingest: common key and token shapes,
//! plus patterns from config. What matches is replaced by `[REDACTED:<kind>]`.

use regex::Regex;

use crate::error::{Error, Result};

pub struct Redactor {
    rules: Vec<(String, Regex)>,
}

const BUILTIN: &[(&str, &str)] = &[
    (
        "private_key",
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
    ),
    ("vaultline_key", r"\bvl_[A-Za-z0-9]{10}_[A-Za-z0-9]{40}\b"),
    ("anthropic_key", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    ("openai_key", r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}"),
    (
        "github_token",
        r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b",
    ),
    ("aws_access_key", r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    ("google_api_key", r"\bAIza[0-9A-Za-z_\-]{35}\b"),
    ("slack_token", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),
    ("bearer", r"(?i)\bbearer\s+[A-Za-z0-9_\-\.=]{20,}"),
    (
        "password_assignment",
        r#"(?i)\b(?:password|passwd|secret|api[_-]?key|token)\s*[:=]\s*["']?[^\s"']{8,}"#,
    ),
];

impl Redactor {
    pub fn new(extra: &[String]) -> Result<Redactor> {
        let mut rules = Vec::new();
        for (kind, pat) in BUILTIN {
            let re = Regex::new(pat)
                .map_err(|e| Error::Internal(format!("builtin redaction rule {kind}: {e}")))?;
            rules.push((kind.to_string(), re));
        }
        for (i, pat) in extra.iter().enumerate() {
            let re = Regex::new(pat).map_err(|e| {
                Error::invalid(format!("checkpoints.redact_patterns[{i}]"), e.to_string())
            })?;
            rules.push(("custom".to_string(), re));
        }
        Ok(Redactor { rules })
    }

    /// Returns the redacted text and how many secrets were replaced.
    pub fn redact(&self, text: &str) -> (String, usize) {
        let mut out = text.to_string();
        let mut count = 0;
        for (kind, re) in &self.rules {
            let n = re.find_iter(&out).count();
            if n > 0 {
                count += n;
                out = re
                    .replace_all(&out, format!("[REDACTED:{kind}]").as_str())
                    .into_owned();
            }
        }
        (out, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_common_shapes_and_leaves_prose() {
        let r = Redactor::new(&["internal-[0-9]{4}".into()]).unwrap();
        let cases = [
            (
                "key sk-ant-api03-abcdefghijklmnopqrstuvwxyz here",
                "anthropic_key",
            ),
            (
                "export OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwx",
                "openai_key",
            ),
            (
                "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
                "github_token",
            ),
            ("AKIAABCDEFGHIJKLMNOP", "aws_access_key"),
            ("Authorization: Bearer abcdefghijklmnopqrstuvwxyz", "bearer"),
            ("password = hunter2hunter2", "password_assignment"),
            ("see internal-1234", "custom"),
        ];
        for (text, kind) in cases {
            let (out, n) = r.redact(text);
            assert!(n >= 1, "{text}");
            assert!(
                out.contains(&format!("[REDACTED:{kind}]")),
                "{text} -> {out}"
            );
        }
        let prose = "We decided to use SQLite because it is one file.";
        assert_eq!(r.redact(prose), (prose.to_string(), 0));
    }

    #[test]
    fn bad_custom_pattern_names_its_index() {
        let err = Redactor::new(&["(".into()]).err().unwrap().to_string();
        assert!(err.contains("redact_patterns[0]"), "{err}");
    }
}
