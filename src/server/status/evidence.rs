//! `/status/evidence/CHECK/RUN/FILE`: a failed run's screenshot or saved page, served from the
//! artifacts directory and from nowhere else.
//!
//! A path is taken only when every segment is a plain name (no `..`, no root, no backslash) and
//! the file it names, after symlinks are resolved, still lies under the artifacts directory.
//! Saved pages are the shop's HTML: served with a `sandbox` policy, so its scripts never run
//! with this server's origin.

use super::{Served, not_found, ops_refusal};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use std::path::{Component, Path as FsPath, PathBuf};

/// The file `relative` names under `root`, if it is a regular file there.
pub fn resolve(root: &FsPath, relative: &str) -> Option<PathBuf> {
    if relative.is_empty() || relative.contains('\\') || relative.contains('\0') {
        return None;
    }
    let rel = FsPath::new(relative);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let file = root.join(rel).canonicalize().ok()?;
    (file.starts_with(&root) && file.is_file()).then_some(file)
}

fn content_type(path: &FsPath) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

pub(super) async fn serve(
    State(served): State<Served>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(off) = super::disabled(&served) {
        return off;
    }
    if let Some(refused) = ops_refusal(&served, &headers).await {
        return refused;
    }
    let Some(file) = resolve(&served.page.setup().artifacts, &path) else {
        return not_found();
    };
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::CONTENT_SECURITY_POLICY, "sandbox"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => not_found(),
    }
}

/// Files of the evidence directory `dir` as paths relative to `root`, when `dir` lies under it.
pub fn listing(root: &FsPath, dir: &FsPath) -> Vec<String> {
    let (Ok(root), Ok(dir)) = (root.canonicalize(), dir.canonicalize()) else {
        return Vec::new();
    };
    let Ok(relative) = dir.strip_prefix(&root) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let joined = relative.join(e.file_name());
            joined.to_str().map(str::to_string)
        })
        .collect();
    files.sort();
    files
}
