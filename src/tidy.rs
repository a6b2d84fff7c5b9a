//! Tidy checks run by `cargo test`: the written invariants of docs/ARCHITECTURE.md
//! that a grep can enforce — module docs, layer boundaries, no SQL in tools.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "target" || n == "node_modules")
            {
                continue;
            }
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(rel: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&root().join(rel), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let rel = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
            (rel, text)
        })
        .collect()
}

#[test]
fn every_source_file_opens_with_a_module_doc() {
    for dir in ["src", "tests", "tools"] {
        for (path, text) in files_under(dir) {
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            assert!(
                first.starts_with("//!"),
                "{path} must open with a //! paragraph"
            );
        }
    }
}

#[test]
fn only_the_store_imports_rusqlite() {
    for (path, text) in files_under("src") {
        if path.starts_with("src/store/") || path == "src/tidy.rs" {
            continue;
        }
        assert!(
            !text.contains("rusqlite::"),
            "{path} uses rusqlite; only src/store/ may"
        );
    }
}

#[test]
fn only_the_transport_knows_rmcp() {
    for (path, text) in files_under("src") {
        if path.starts_with("src/transport/") || path == "src/tidy.rs" {
            continue;
        }
        assert!(
            !text.contains("rmcp::"),
            "{path} uses rmcp; only src/transport/ may"
        );
    }
}

#[test]
fn tools_and_domain_hold_no_sql() {
    for dir in [
        "src/tools",
        "src/workflows",
        "src/tasks",
        "src/checkpoints",
        "src/quota",
        "src/modules",
    ] {
        for (path, text) in files_under(dir) {
            for sql in ["SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM"] {
                assert!(
                    !text.contains(sql),
                    "{path} contains SQL ({sql:?}); SQL lives in src/store/"
                );
            }
        }
    }
}

#[test]
fn modules_reach_the_network_only_through_net() {
    for (path, text) in files_under("src/modules") {
        if path == "src/modules/net.rs" {
            continue;
        }
        assert!(
            !text.contains("reqwest"),
            "{path} names reqwest; a module's HTTP goes through src/modules/net.rs"
        );
    }
}
