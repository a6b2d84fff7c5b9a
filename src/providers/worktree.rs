//! Isolated git worktrees for agent CLIs doing repository work: a detached
//! checkout of the repository's HEAD under a directory vaultline owns, so an
//! agent's edits never touch the operator's working copy and a verifier can run
//! in the agent's tree.
//!
//! Layout: `<root>/<name>/` holds `vaultline-worktree.json` (the marker: which
//! repository the tree belongs to) and `tree/` (the worktree itself). The marker
//! sits beside the tree, not in it, so neither the agent nor `git status` sees it.
//! [`sweep`] removes, at start-up, every marked directory that is not live (left
//! by a crash) and prunes its registration in its repository; it never touches a
//! directory without the marker.
//!
//! git runs as a program with arguments (never through a shell), on a blocking
//! thread, with hooks disabled for `worktree add` (a repository's post-checkout
//! hook has no business running inside vaultline).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

/// The marker file's name, in `<root>/<name>/`.
pub const MARKER: &str = "vaultline-worktree.json";
/// The worktree's directory, in `<root>/<name>/`.
pub const TREE: &str = "tree";
/// The longest worktree name accepted.
pub const MAX_NAME: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum WorktreeError {
    #[error("{0} is not a git working copy (git rev-parse --show-toplevel failed: {1})")]
    NotARepo(PathBuf, String),
    #[error(
        "worktree name {0:?} must be 1-{MAX_NAME} letters, digits, '-', '_' or '.', not starting with '.'"
    )]
    BadName(String),
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error("git {args} failed: {message}")]
    Git { args: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the blocking git task failed: {0}")]
    Join(String),
}

/// What the marker records.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    /// The repository's top level, where the worktree is registered.
    repo: PathBuf,
    name: String,
}

/// A live worktree. [`Worktree::remove`] removes it; dropping it without that
/// removes it too, best effort, on a blocking thread.
#[derive(Debug)]
pub struct Worktree {
    repo: PathBuf,
    dir: PathBuf,
    tree: PathBuf,
    name: String,
    removed: bool,
}

impl Worktree {
    /// Makes `<root>/<name>/tree`, a detached worktree of `repo`'s HEAD.
    /// Refuses a `repo` that is not a git working copy, a bad `name`, and a
    /// `name` already present under `root`.
    pub async fn create(repo: &Path, root: &Path, name: &str) -> Result<Worktree, WorktreeError> {
        let (repo, root, name) = (repo.to_path_buf(), root.to_path_buf(), name.to_string());
        blocking(move || create_blocking(&repo, &root, &name)).await
    }

    /// The worktree: the directory to run the agent and the verifier in.
    pub fn path(&self) -> &Path {
        &self.tree
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The repository's top level the worktree belongs to.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// `git worktree remove --force`, then the directory, then `git worktree prune`.
    pub async fn remove(mut self) -> Result<(), WorktreeError> {
        self.removed = true;
        let (repo, dir) = (self.repo.clone(), self.dir.clone());
        blocking(move || remove_blocking(&repo, &dir)).await
    }
}

impl Drop for Worktree {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let (repo, dir) = (self.repo.clone(), self.dir.clone());
        let job = move || {
            if let Err(e) = remove_blocking(&repo, &dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "dropped worktree not removed; sweep will");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(job);
            }
            Err(_) => job(),
        }
    }
}

/// Removes every marked directory under `root` whose name is not in `live` (left
/// by a crash), prunes the registrations in their repositories, and returns how
/// many it removed. Unmarked directories are left alone; a missing `root` is 0.
pub async fn sweep(root: &Path, live: &HashSet<String>) -> usize {
    let (root, live) = (root.to_path_buf(), live.clone());
    blocking(move || Ok(sweep_blocking(&root, &live)))
        .await
        .unwrap_or(0)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WorktreeError> + Send + 'static,
) -> Result<T, WorktreeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WorktreeError::Join(e.to_string()))?
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WorktreeError + '_ {
    move |source| WorktreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs git with `args` in `cwd`; stdout on success.
fn git(cwd: &Path, args: &[&str]) -> Result<String, WorktreeError> {
    let failed = |message: String| WorktreeError::Git {
        args: args.join(" "),
        message,
    };
    let out = Command::new("git")
        .args(args)
        .current_dir(cwd)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| failed(format!("could not run git: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        Err(failed(line.trim().to_string()))
    }
}

fn create_blocking(repo: &Path, root: &Path, name: &str) -> Result<Worktree, WorktreeError> {
    if !valid_name(name) {
        return Err(WorktreeError::BadName(name.to_string()));
    }
    if !repo.is_dir() {
        return Err(WorktreeError::NotARepo(
            repo.to_path_buf(),
            "no such directory".into(),
        ));
    }
    let top = match git(repo, &["rev-parse", "--show-toplevel"]) {
        Ok(top) if !top.is_empty() => PathBuf::from(top),
        Ok(_) => {
            return Err(WorktreeError::NotARepo(
                repo.to_path_buf(),
                "no top level".into(),
            ));
        }
        Err(WorktreeError::Git { message, .. }) => {
            return Err(WorktreeError::NotARepo(repo.to_path_buf(), message));
        }
        Err(e) => return Err(e),
    };
    std::fs::create_dir_all(root).map_err(io(root))?;
    let root = std::fs::canonicalize(root).map_err(io(root))?;
    let dir = root.join(name);
    // create_dir (not _all) fails if the name is taken: two calls never share a tree.
    std::fs::create_dir(&dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => WorktreeError::Exists(dir.clone()),
        _ => io(&dir)(e),
    })?;
    let marker = Marker {
        repo: top.clone(),
        name: name.to_string(),
    };
    let written = serde_json::to_vec_pretty(&marker)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|bytes| std::fs::write(dir.join(MARKER), bytes));
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(io(&dir)(e));
    }
    let tree = dir.join(TREE);
    let tree_arg = tree.to_string_lossy().into_owned();
    let added = git(
        &top,
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "worktree",
            "add",
            "--detach",
            &tree_arg,
            "HEAD",
        ],
    );
    if let Err(e) = added {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = git(&top, &["worktree", "prune"]);
        return Err(e);
    }
    Ok(Worktree {
        repo: top,
        dir,
        tree,
        name: name.to_string(),
        removed: false,
    })
}

fn remove_blocking(repo: &Path, dir: &Path) -> Result<(), WorktreeError> {
    let tree = dir.join(TREE);
    let removed = if tree.exists() && repo.is_dir() {
        git(
            repo,
            &["worktree", "remove", "--force", &tree.to_string_lossy()],
        )
        .map(|_| ())
    } else {
        Ok(())
    };
    // Whatever git did, the directory goes, and the registration with it.
    let deleted = match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(dir)(e)),
        _ => Ok(()),
    };
    if repo.is_dir() {
        let _ = git(repo, &["worktree", "prune"]);
    }
    match (deleted, removed) {
        (Err(e), _) => Err(e),
        (Ok(()), _) if !dir.exists() => Ok(()),
        (Ok(()), r) => r,
    }
}

fn sweep_blocking(root: &Path, live: &HashSet<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let dir = entry.path();
        let Some(name) = dir.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        if live.contains(&name) || !dir.is_dir() {
            continue;
        }
        let Some(marker) = std::fs::read(dir.join(MARKER))
            .ok()
            .and_then(|b| serde_json::from_slice::<Marker>(&b).ok())
        else {
            continue;
        };
        match remove_blocking(&marker.repo, &dir) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "orphan worktree not removed");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["task-1", "01HX_abc.2", "a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(MAX_NAME + 1)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
