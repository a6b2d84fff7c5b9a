//! Where an account's secret lives, and reading it safely.
//!
//! The database holds only a reference — `env:NAME` or `file:/absolute/path` —
//! never the secret. `resolve` reads it when it is needed: a file readable by
//! group or others is refused (with the path and the fix), and the value is
//! shape-checked (one line, no spaces, not empty, not absurdly long). The value
//! is wrapped in `Secret`, whose `Debug` prints `***` and which has no `Display`
//! nor `Serialize`; errors name the reference, never the value.

use std::path::PathBuf;

/// The most bytes a secret may have; API keys and OAuth tokens are far shorter.
pub const MAX_SECRET_BYTES: usize = 8192;
/// The fewest characters a secret may have; shorter is a placeholder or a typo.
pub const MIN_SECRET_CHARS: usize = 8;
/// The longest reference accepted.
pub const MAX_REF_CHARS: usize = 1024;

/// Where a secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

/// Why a reference or its secret is refused. The message is for the caller:
/// it names the reference and the fix, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// A secret read from its reference. Its `Debug` prints `***`; read it with
/// `expose` at the one place that sends it to a provider.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Secret {
    /// Wraps a secret obtained elsewhere (a test's fake key, a CLI's own login).
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl SecretRef {
    /// Parses `env:NAME` (NAME of letters, digits and `_`, not starting with a
    /// digit) or `file:/absolute/path`.
    pub fn parse(s: &str) -> Result<SecretRef, SecretError> {
        if s.chars().count() > MAX_REF_CHARS {
            return Err(SecretError(format!(
                "is longer than {MAX_REF_CHARS} characters"
            )));
        }
        if let Some(name) = s.strip_prefix("env:") {
            let ok = !name.is_empty()
                && name.len() <= 128
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                return Err(SecretError(format!(
                    "env:{name} is not an environment variable name (letters, digits and _)"
                )));
            }
            // The config reads every VAULTLINE_* variable and refuses unknown
            // ones, so a secret there would stop the server from starting.
            if name.starts_with("VAULTLINE_") {
                return Err(SecretError(format!(
                    "env:{name}: VAULTLINE_* variables are configuration; keep the secret in another variable"
                )));
            }
            return Ok(SecretRef::Env(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            let p = PathBuf::from(path);
            if !p.is_absolute() || path.contains('\0') {
                return Err(SecretError(format!(
                    "file:{path} must be an absolute path (file:/etc/vaultline/key)"
                )));
            }
            return Ok(SecretRef::File(p));
        }
        Err(SecretError(
            "must be env:NAME or file:/absolute/path — the place the secret lives, never the secret itself"
                .into(),
        ))
    }

    /// Reads and checks the secret.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let raw = match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|e| match e {
                std::env::VarError::NotPresent => SecretError(format!(
                    "env:{name}: the variable is not set in the server's environment"
                )),
                std::env::VarError::NotUnicode(_) => {
                    SecretError(format!("env:{name}: the value is not valid UTF-8"))
                }
            })?,
            SecretRef::File(path) => read_private_file(path)?,
        };
        check_shape(&raw).map_err(|why| SecretError(format!("{self}: the secret {why}")))?;
        // One trailing newline is how editors and `echo` leave a file.
        let value = raw.strip_suffix('\n').unwrap_or(&raw);
        let value = value.strip_suffix('\r').unwrap_or(value);
        Ok(Secret(value.to_string()))
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
        }
    }
}

#[cfg(unix)]
fn read_private_file(path: &std::path::Path) -> Result<String, SecretError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| SecretError(format!("file:{shown}: cannot open it ({})", e.kind())))?;
    let meta = file
        .metadata()
        .map_err(|e| SecretError(format!("file:{shown}: cannot stat it ({})", e.kind())))?;
    if !meta.is_file() {
        return Err(SecretError(format!("file:{shown} is not a regular file")));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError(format!(
            "file:{shown} is readable by group or others (mode {mode:03o}); \
             run `chmod 600 {shown}` so only its owner can read it"
        )));
    }
    if meta.len() > MAX_SECRET_BYTES as u64 + 2 {
        return Err(SecretError(format!(
            "file:{shown}: the secret is longer than {MAX_SECRET_BYTES} bytes"
        )));
    }
    let mut raw = String::new();
    file.take(MAX_SECRET_BYTES as u64 + 3)
        .read_to_string(&mut raw)
        .map_err(|_| SecretError(format!("file:{shown}: the content is not UTF-8 text")))?;
    Ok(raw)
}

#[cfg(not(unix))]
fn read_private_file(path: &std::path::Path) -> Result<String, SecretError> {
    Err(SecretError(format!(
        "file:{}: file secrets need a Unix permission check; use env:NAME",
        path.display()
    )))
}

/// One line of printable, space-free text, of a plausible length. The reason
/// never quotes the value.
fn check_shape(raw: &str) -> Result<(), &'static str> {
    let v = raw.strip_suffix('\n').unwrap_or(raw);
    let v = v.strip_suffix('\r').unwrap_or(v);
    if v.trim().is_empty() {
        return Err("is empty");
    }
    if v.contains(['\n', '\r']) {
        return Err("spans several lines; it must be one line");
    }
    if v.chars().any(char::is_whitespace) {
        return Err("contains whitespace");
    }
    if v.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if v.len() > MAX_SECRET_BYTES {
        return Err("is absurdly long");
    }
    if v.chars().count() < MIN_SECRET_CHARS {
        return Err("is too short to be a credential");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        let cases: &[(&str, Result<SecretRef, &str>)] = &[
            (
                "env:OPENAI_API_KEY",
                Ok(SecretRef::Env("OPENAI_API_KEY".into())),
            ),
            ("env:_K2", Ok(SecretRef::Env("_K2".into()))),
            (
                "file:/etc/vl/key",
                Ok(SecretRef::File("/etc/vl/key".into())),
            ),
            ("env:", Err("environment variable name")),
            ("env:2X", Err("environment variable name")),
            ("env:A-B", Err("environment variable name")),
            ("env:VAULTLINE_KEY", Err("configuration")),
            ("file:relative/key", Err("absolute path")),
            ("sk-live-abcdef", Err("never the secret itself")),
            ("", Err("env:NAME or file:")),
        ];
        for (input, want) in cases {
            match (SecretRef::parse(input), want) {
                (Ok(r), Ok(w)) => assert_eq!(&r, w, "{input}"),
                (Err(e), Err(needle)) => assert!(e.0.contains(needle), "{input}: {e}"),
                (got, _) => panic!("{input}: unexpected {got:?}"),
            }
        }
        // The error for a pasted secret does not echo it.
        let e = SecretRef::parse("sk-live-abcdef").unwrap_err();
        assert!(!e.0.contains("sk-live"), "{e}");
    }

    #[test]
    fn shape_cases() {
        let long = "k".repeat(MAX_SECRET_BYTES + 1);
        let cases: &[(&str, Option<&str>)] = &[
            ("sk-abcdef0123456789", None),
            ("sk-abcdef0123456789\n", None),
            ("sk-abcdef0123456789\r\n", None),
            ("", Some("empty")),
            ("   \n", Some("empty")),
            ("abc def ghi jkl", Some("whitespace")),
            ("line-one-1234\nline-two-5678", Some("several lines")),
            ("short", Some("too short")),
            ("tab\tseparated-key", Some("whitespace")),
            (long.as_str(), Some("absurdly long")),
        ];
        for (v, want) in cases {
            match (check_shape(v), want) {
                (Ok(()), None) => {}
                (Err(e), Some(needle)) => assert!(e.contains(needle), "{v:?}: {e}"),
                (got, _) => panic!("{v:?}: unexpected {got:?}"),
            }
        }
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let s = Secret("sk-topsecret-123456".into());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "sk-topsecret-123456");
    }

    #[cfg(unix)]
    #[test]
    fn files_must_be_private_and_well_formed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-file-secret-0123456789\n").unwrap();
        let r = SecretRef::parse(&format!("file:{}", path.display())).unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o400, true),
            (0o640, false),
            (0o644, false),
            (0o604, false),
        ] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            match r.resolve() {
                Ok(s) => {
                    assert!(ok, "mode {mode:o} should be refused");
                    assert_eq!(s.expose(), "sk-file-secret-0123456789");
                }
                Err(e) => {
                    assert!(!ok, "mode {mode:o}: {e}");
                    assert!(
                        e.0.contains("chmod 600") && e.0.contains(&path.display().to_string()),
                        "{e}"
                    );
                    assert!(!e.0.contains("sk-file-secret"), "{e}");
                }
            }
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "two\nlines-of-secret\n").unwrap();
        let e = r.resolve().unwrap_err();
        assert!(
            e.0.contains("several lines") && !e.0.contains("lines-of-secret"),
            "{e}"
        );
        let missing = SecretRef::parse("file:/nonexistent/vaultline/key").unwrap();
        assert!(missing.resolve().unwrap_err().0.contains("cannot open"));
        let dir_ref = SecretRef::File(dir.path().to_path_buf());
        assert!(dir_ref.resolve().is_err());
    }

    #[test]
    fn env_secrets() {
        // A name no other test or process sets.
        let name = "VL_TEST_SECRET_REF_UNSET_4711";
        let e = SecretRef::Env(name.into()).resolve().unwrap_err();
        assert!(e.0.contains("not set"), "{e}");
        // Setting a variable here would race other tests (set_var is unsafe in
        // edition 2024); the end-to-end tests pass one to the server process.
        assert!(SecretRef::parse("env:PATH").is_ok());
    }
}
