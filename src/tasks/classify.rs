//! A deterministic, rule-based classifier: task_type, complexity, language, stack
//! and domain from an instruction and the paths it touches. Cheap enough to run on
//! every task; each rule that fired is named in `reasons` so the result can be
//! checked by a person.

use schemars::JsonSchema;
use serde::Serialize;

use crate::workflows::{Complexity, TaskType};

#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Classification {
    pub task_type: TaskType,
    pub complexity: Complexity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Which rules decided, in order.
    pub reasons: Vec<String>,
}

/// Lowercase words of the text (letters, digits, `_`, `-`, `.`, `+`, `#` kept inside words).
fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '#')))
        .map(|w| w.trim_matches(|c| c == '.' || c == '-').to_string())
        .filter(|w| !w.is_empty())
        .collect()
}

fn has_any(ws: &[String], keys: &[&str]) -> Option<String> {
    keys.iter()
        .find(|k| {
            ws.iter()
                .any(|w| w == *k || (k.len() > 4 && w.starts_with(*k)))
        })
        .map(|k| (*k).to_string())
}

const TYPE_RULES: &[(TaskType, &[&str])] = &[
    (TaskType::Review, &["review", "audit", "critique", "assess"]),
    (
        TaskType::Docs,
        &[
            "docs",
            "document",
            "documentation",
            "readme",
            "docstring",
            "changelog",
            "comment",
        ],
    ),
    (
        TaskType::Test,
        &[
            "test", "tests", "testing", "coverage", "e2e", "unittest", "spec",
        ],
    ),
    (
        TaskType::Fix,
        &[
            "fix",
            "bug",
            "error",
            "crash",
            "broken",
            "regression",
            "fails",
            "failing",
            "panic",
            "exception",
            "leak",
        ],
    ),
    (
        TaskType::Refactor,
        &[
            "refactor",
            "cleanup",
            "clean",
            "restructure",
            "rename",
            "extract",
            "simplify",
            "dedupe",
            "reorganize",
        ],
    ),
];

const LANGS_BY_EXT: &[(&str, &str)] = &[
    ("rs", "rust"),
    ("py", "python"),
    ("ts", "typescript"),
    ("tsx", "typescript"),
    ("js", "javascript"),
    ("jsx", "javascript"),
    ("mjs", "javascript"),
    ("go", "go"),
    ("java", "java"),
    ("kt", "kotlin"),
    ("rb", "ruby"),
    ("swift", "swift"),
    ("c", "c"),
    ("h", "c"),
    ("cc", "cpp"),
    ("cpp", "cpp"),
    ("cs", "csharp"),
    ("php", "php"),
    ("sql", "sql"),
    ("sh", "shell"),
    ("md", "markdown"),
];

const LANGS_BY_NAME: &[(&str, &str)] = &[
    ("rust", "rust"),
    ("python", "python"),
    ("typescript", "typescript"),
    ("javascript", "javascript"),
    ("golang", "go"),
    ("java", "java"),
    ("kotlin", "kotlin"),
    ("ruby", "ruby"),
    ("swift", "swift"),
    ("c++", "cpp"),
    ("c#", "csharp"),
    ("php", "php"),
    ("bash", "shell"),
];

const STACKS: &[(&str, &str)] = &[
    ("cargo.toml", "cargo"),
    ("axum", "axum"),
    ("tokio", "tokio"),
    ("package.json", "node"),
    ("react", "react"),
    ("next.js", "nextjs"),
    ("nextjs", "nextjs"),
    ("vue", "vue"),
    ("express", "express"),
    ("django", "django"),
    ("flask", "flask"),
    ("fastapi", "fastapi"),
    ("pyproject.toml", "python"),
    ("requirements.txt", "python"),
    ("go.mod", "go-modules"),
    ("rails", "rails"),
    ("spring", "spring"),
    ("wrangler.toml", "cloudflare-workers"),
    ("terraform", "terraform"),
    ("dockerfile", "docker"),
    ("kubernetes", "kubernetes"),
];

const DOMAINS: &[(&str, &[&str])] = &[
    (
        "auth",
        &[
            "auth",
            "login",
            "logout",
            "oauth",
            "password",
            "session",
            "token",
            "jwt",
            "permission",
            "rbac",
        ],
    ),
    (
        "billing",
        &[
            "billing",
            "invoice",
            "payment",
            "stripe",
            "pricing",
            "subscription",
            "ledger",
        ],
    ),
    (
        "database",
        &[
            "database",
            "sql",
            "sqlite",
            "postgres",
            "migration",
            "schema",
            "query",
            "index",
        ],
    ),
    (
        "ci",
        &["ci", "pipeline", "workflow.yml", "github-actions", "build"],
    ),
    (
        "infra",
        &[
            "deploy",
            "docker",
            "kubernetes",
            "terraform",
            "infra",
            "nginx",
            "systemd",
        ],
    ),
    (
        "ui",
        &[
            "ui",
            "css",
            "button",
            "page",
            "layout",
            "component",
            "frontend",
            "style",
        ],
    ),
    (
        "api",
        &[
            "api", "endpoint", "rest", "graphql", "route", "handler", "http",
        ],
    ),
    ("docs", &["readme", "docs", "documentation"]),
];

const COMPLEX_WORDS: &[&str] = &[
    "architecture",
    "migrate",
    "migration",
    "distributed",
    "concurrency",
    "concurrent",
    "race",
    "redesign",
    "rewrite",
    "security",
    "performance",
    "scalability",
    "protocol",
];
const TRIVIAL_WORDS: &[&str] = &[
    "typo",
    "rename",
    "bump",
    "version",
    "whitespace",
    "spelling",
    "lint",
];

pub fn classify(instruction: &str, paths: &[String]) -> Classification {
    let mut reasons = Vec::new();
    let ws = words(instruction);
    let path_words: Vec<String> = paths.iter().flat_map(|p| words(p)).collect();

    let mut task_type = TaskType::Feature;
    for (t, keys) in TYPE_RULES {
        if let Some(k) = has_any(&ws, keys) {
            task_type = *t;
            reasons.push(format!("task_type {} (\"{k}\")", t.as_str()));
            break;
        }
    }
    if task_type == TaskType::Feature {
        if !paths.is_empty() && paths.iter().all(|p| p.ends_with(".md")) {
            task_type = TaskType::Docs;
            reasons.push("task_type docs (only Markdown paths)".into());
        } else if !paths.is_empty() && paths.iter().all(|p| p.contains("test")) {
            task_type = TaskType::Test;
            reasons.push("task_type test (only test paths)".into());
        } else {
            reasons.push("task_type feature (default)".into());
        }
    }

    let len = ws.len();
    let complexity = if let Some(k) = has_any(&ws, COMPLEX_WORDS) {
        reasons.push(format!("complexity complex (\"{k}\")"));
        Complexity::Complex
    } else if let Some(k) = has_any(&ws, TRIVIAL_WORDS).filter(|_| len <= 25 && paths.len() <= 2) {
        reasons.push(format!("complexity trivial (\"{k}\")"));
        Complexity::Trivial
    } else if paths.len() > 8 || len > 120 {
        reasons.push(format!(
            "complexity complex ({} paths, {len} words)",
            paths.len()
        ));
        Complexity::Complex
    } else if paths.len() > 3 || len > 40 {
        reasons.push(format!(
            "complexity moderate ({} paths, {len} words)",
            paths.len()
        ));
        Complexity::Moderate
    } else {
        reasons.push(format!(
            "complexity simple ({} paths, {len} words)",
            paths.len()
        ));
        Complexity::Simple
    };

    let mut counts: Vec<(&str, usize)> = Vec::new();
    for p in paths {
        if let Some(ext) = p.rsplit_once('.').map(|(_, e)| e.to_lowercase())
            && let Some((_, lang)) = LANGS_BY_EXT.iter().find(|(e, _)| *e == ext)
            && *lang != "markdown"
        {
            match counts.iter_mut().find(|(l, _)| l == lang) {
                Some(c) => c.1 += 1,
                None => counts.push((lang, 1)),
            }
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let language = if let Some((lang, n)) = counts.first() {
        reasons.push(format!("language {lang} ({n} paths)"));
        Some(lang.to_string())
    } else if let Some((name, lang)) = LANGS_BY_NAME
        .iter()
        .find(|(n, _)| ws.iter().any(|w| w == n))
    {
        reasons.push(format!("language {lang} (\"{name}\")"));
        Some(lang.to_string())
    } else {
        None
    };

    let all: Vec<&String> = ws.iter().chain(path_words.iter()).collect();
    let stack = STACKS
        .iter()
        .find(|(marker, _)| {
            all.iter()
                .any(|w| w.as_str() == *marker || w.ends_with(&format!("/{marker}")))
                || paths.iter().any(|p| p.to_lowercase().ends_with(marker))
        })
        .map(|(marker, stack)| {
            reasons.push(format!("stack {stack} (\"{marker}\")"));
            stack.to_string()
        });

    let combined: Vec<String> = all.into_iter().cloned().collect();
    let domain = DOMAINS.iter().find_map(|(d, keys)| {
        has_any(&combined, keys).map(|k| {
            reasons.push(format!("domain {d} (\"{k}\")"));
            d.to_string()
        })
    });

    Classification {
        task_type,
        complexity,
        language,
        stack,
        domain,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Expect {
        t: &'static str,
        c: &'static str,
        lang: Option<&'static str>,
        stack: Option<&'static str>,
        domain: Option<&'static str>,
    }

    fn check(instruction: &str, paths: &[&str], e: Expect) {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let got = classify(instruction, &paths);
        let where_ = format!("{instruction:?} {paths:?} -> {got:?}");
        assert_eq!(got.task_type.as_str(), e.t, "task_type: {where_}");
        assert_eq!(got.complexity.as_str(), e.c, "complexity: {where_}");
        assert_eq!(got.language.as_deref(), e.lang, "language: {where_}");
        assert_eq!(got.stack.as_deref(), e.stack, "stack: {where_}");
        assert_eq!(got.domain.as_deref(), e.domain, "domain: {where_}");
        assert!(!got.reasons.is_empty());
    }

    fn e(
        t: &'static str,
        c: &'static str,
        lang: Option<&'static str>,
        stack: Option<&'static str>,
        domain: Option<&'static str>,
    ) -> Expect {
        Expect {
            t,
            c,
            lang,
            stack,
            domain,
        }
    }

    #[test]
    fn table() {
        let cases: Vec<(&str, Vec<&str>, Expect)> = vec![
            (
                "Fix the crash when the login form is empty",
                vec!["src/auth/login.rs"],
                e("fix", "simple", Some("rust"), None, Some("auth")),
            ),
            (
                "Bug: invoices show the wrong total",
                vec!["app/billing/invoice.py"],
                e("fix", "simple", Some("python"), None, Some("billing")),
            ),
            (
                "Regression in the API handler for /users",
                vec![],
                e("fix", "simple", None, None, Some("api")),
            ),
            (
                "Add a dark mode toggle button to the settings page",
                vec!["web/src/Settings.tsx"],
                e("feature", "simple", Some("typescript"), None, Some("ui")),
            ),
            (
                "Implement CSV export",
                vec!["src/export.go", "src/export_csv.go"],
                e("feature", "simple", Some("go"), None, None),
            ),
            (
                "Write unit tests for the ledger",
                vec!["tests/ledger_test.rs"],
                e("test", "simple", Some("rust"), None, Some("billing")),
            ),
            (
                "Increase coverage of the parser",
                vec![],
                e("test", "simple", None, None, None),
            ),
            (
                "",
                vec!["tests/a_test.py", "tests/b_test.py"],
                e("test", "simple", Some("python"), None, None),
            ),
            (
                "Refactor the session store into its own module",
                vec!["src/store.rs", "src/session.rs"],
                e("refactor", "simple", Some("rust"), None, Some("auth")),
            ),
            (
                "Clean up duplicated helpers",
                vec![],
                e("refactor", "simple", None, None, None),
            ),
            (
                "Review the pull request for the payment flow",
                vec![],
                e("review", "simple", None, None, Some("billing")),
            ),
            (
                "Audit the permission checks",
                vec![],
                e("review", "simple", None, None, Some("auth")),
            ),
            (
                "Update the README with install steps",
                vec!["README.md"],
                e("docs", "simple", None, None, Some("docs")),
            ),
            (
                "",
                vec!["docs/guide.md", "docs/faq.md"],
                e("docs", "simple", None, None, Some("docs")),
            ),
            (
                "Fix typo in error message",
                vec!["src/main.rs"],
                e("fix", "trivial", Some("rust"), None, None),
            ),
            (
                "Bump the tokio version",
                vec!["Cargo.toml"],
                e("feature", "trivial", None, Some("cargo"), None),
            ),
            (
                "Rename the config key",
                vec![],
                e("refactor", "trivial", None, None, None),
            ),
            (
                "Migrate the storage layer to PostgreSQL with zero downtime",
                vec![],
                e("feature", "complex", None, None, Some("database")),
            ),
            (
                "Redesign the architecture of the scheduler for distributed workers",
                vec![],
                e("feature", "complex", None, None, None),
            ),
            (
                "Fix the race in the concurrent cache",
                vec!["src/cache.rs"],
                e("fix", "complex", Some("rust"), None, None),
            ),
            (
                "Add the endpoint",
                vec!["a.ts", "b.ts", "c.ts", "d.ts", "e.ts"],
                e("feature", "moderate", Some("typescript"), None, Some("api")),
            ),
            (
                "Add search",
                vec![
                    "1.py", "2.py", "3.py", "4.py", "5.py", "6.py", "7.py", "8.py", "9.py",
                ],
                e("feature", "complex", Some("python"), None, None),
            ),
            (
                "Add a new axum route for health",
                vec!["src/http.rs"],
                e("feature", "simple", Some("rust"), Some("axum"), Some("api")),
            ),
            (
                "Add a Django view for signups",
                vec![],
                e("feature", "simple", None, Some("django"), None),
            ),
            (
                "Set up the Dockerfile for deployment",
                vec!["Dockerfile"],
                e("feature", "simple", None, Some("docker"), Some("infra")),
            ),
            (
                "Add a React component for the chart",
                vec!["ui/Chart.jsx"],
                e(
                    "feature",
                    "simple",
                    Some("javascript"),
                    Some("react"),
                    Some("ui"),
                ),
            ),
            (
                "Write the service in golang",
                vec![],
                e("feature", "simple", Some("go"), None, None),
            ),
            (
                "Add a sqlite index on created_at",
                vec!["migrations/0002.sql"],
                e("feature", "simple", Some("sql"), None, Some("database")),
            ),
            (
                "Add node script",
                vec!["package.json", "scripts/run.mjs"],
                e("feature", "simple", Some("javascript"), Some("node"), None),
            ),
        ];
        assert!(cases.len() >= 25);
        for (instruction, paths, expect) in cases {
            check(instruction, &paths, expect);
        }
    }

    #[test]
    fn deterministic() {
        let p = vec!["src/a.rs".to_string()];
        assert_eq!(classify("Fix the bug", &p), classify("Fix the bug", &p));
    }
}
