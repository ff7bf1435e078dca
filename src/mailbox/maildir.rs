//! A local Maildir as a mailbox: for shops whose mail server runs on the same host, and the demo.
//!
//! Folders follow Maildir++: `INBOX` is the directory itself, folder `Junk` is `.Junk/`. The
//! Maildir++ `maildirsize` file, when the delivery agent keeps one, gives the quota.

use super::{MailSession, MailStore, MailboxError, MailboxSpec, MessageId, MessageRef, Quota};
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// Spam folder names tried when `spam_folders` is not set.
const DEFAULT_SPAM_FOLDERS: &[&str] = &["Junk", "Spam", "Junk E-mail"];

/// A Maildir mailbox.
pub struct MaildirStore {
    root: PathBuf,
    folders: Vec<String>,
    spam_folders: Option<Vec<String>>,
    poll_interval: Duration,
    max_message: u64,
}

impl MaildirStore {
    /// A store for the Maildir at `root`.
    pub fn new(_name: &str, root: PathBuf, spec: &MailboxSpec) -> Self {
        MaildirStore {
            root,
            folders: spec.folders.clone(),
            spam_folders: spec.spam_folders.clone(),
            poll_interval: spec.poll_interval.get(),
            max_message: spec.max_message.0,
        }
    }

    fn folder_dir(&self, folder: &str) -> PathBuf {
        if folder.eq_ignore_ascii_case("INBOX") {
            self.root.clone()
        } else {
            self.root.join(format!(".{folder}"))
        }
    }
}

impl MailStore for MaildirStore {
    fn describe(&self) -> String {
        format!("maildir {}", self.root.display())
    }

    fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    fn open(&self) -> BoxFuture<'_, Result<Box<dyn MailSession>, MailboxError>> {
        Box::pin(async move {
            let what = self.describe();
            let mut folders = Vec::new();
            for f in &self.folders {
                let dir = self.folder_dir(f);
                if !dir.join("cur").is_dir() && !dir.join("new").is_dir() {
                    return Err(MailboxError::NoFolder {
                        what,
                        folder: f.clone(),
                    });
                }
                folders.push((f.clone(), dir, false));
            }
            let spam: Vec<String> = match &self.spam_folders {
                Some(list) => list.clone(),
                None => DEFAULT_SPAM_FOLDERS.iter().map(|s| s.to_string()).collect(),
            };
            for f in spam {
                let dir = self.folder_dir(&f);
                // A missing spam folder only means nothing was filed as spam yet.
                folders.push((f, dir, true));
            }
            Ok(Box::new(MaildirSession {
                what,
                root: self.root.clone(),
                folders,
                examined: HashSet::new(),
                max_message: self.max_message,
            }) as Box<dyn MailSession>)
        })
    }
}

struct MaildirSession {
    what: String,
    root: PathBuf,
    /// (name, directory, is spam)
    folders: Vec<(String, PathBuf, bool)>,
    /// Unique names (the part before `:2,`) already returned.
    examined: HashSet<String>,
    max_message: u64,
}

/// The unique part of a Maildir file name; flags after `:` change when a client reads it.
fn unique_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.split_once(':') {
        Some((unique, _)) => unique.to_string(),
        None => name,
    }
}

impl MaildirSession {
    fn io_error(&self, what: impl std::fmt::Display) -> MailboxError {
        MailboxError::Io {
            what: self.what.clone(),
            reason: what.to_string(),
        }
    }
}

impl MailSession for MaildirSession {
    fn list_new(
        &mut self,
        since: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<MessageRef>, MailboxError>> {
        Box::pin(async move {
            if !self.root.is_dir() {
                return Err(self.io_error(format!("{} is not a directory", self.root.display())));
            }
            let mut found = Vec::new();
            for (folder, dir, spam) in &self.folders {
                for sub in ["new", "cur"] {
                    let entries = match std::fs::read_dir(dir.join(sub)) {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            return Err(MailboxError::Io {
                                what: self.what.clone(),
                                reason: format!("cannot read {}: {e}", dir.join(sub).display()),
                            });
                        }
                    };
                    for entry in entries.flatten() {
                        let path = entry.path();
                        let Ok(meta) = entry.metadata() else { continue };
                        if !meta.is_file() {
                            continue;
                        }
                        let arrived = meta.modified().ok();
                        if arrived.is_some_and(|t| t < since) {
                            continue;
                        }
                        if !self.examined.insert(unique_name(&path)) {
                            continue;
                        }
                        found.push(MessageRef {
                            folder: folder.clone(),
                            spam: *spam,
                            id: MessageId::Path(path),
                            arrived,
                            size: Some(meta.len()),
                        });
                    }
                }
            }
            found.sort_by_key(|m| m.arrived);
            Ok(found)
        })
    }

    fn fetch<'a>(
        &'a mut self,
        message: &'a MessageRef,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, MailboxError>> {
        Box::pin(async move {
            let MessageId::Path(path) = &message.id else {
                return Ok(None);
            };
            let path = match locate(path) {
                Some(p) => p,
                None => return Ok(None),
            };
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.io_error(format!("cannot read {}: {e}", path.display()))),
            };
            let mut raw = Vec::new();
            file.take(self.max_message + 1)
                .read_to_end(&mut raw)
                .map_err(|e| self.io_error(format!("cannot read {}: {e}", path.display())))?;
            if raw.len() as u64 > self.max_message {
                return Ok(None);
            }
            Ok(Some(raw))
        })
    }

    fn delete<'a>(
        &'a mut self,
        message: &'a MessageRef,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            let MessageId::Path(path) = &message.id else {
                return Ok(());
            };
            let Some(path) = locate(path) else {
                return Ok(());
            };
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.io_error(format!("cannot delete {}: {e}", path.display()))),
            }
        })
    }

    fn wait_for_change<'a>(
        &'a mut self,
        max: Duration,
        wake: &'a Notify,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(max) => {}
                _ = wake.notified() => {}
            }
            Ok(())
        })
    }

    fn quota(&mut self) -> BoxFuture<'_, Result<Option<Quota>, MailboxError>> {
        Box::pin(async move { Ok(read_maildirsize(&self.root.join("maildirsize"))) })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// Finds a message that a mail client may have moved from `new/` to `cur/` (adding flags).
fn locate(path: &Path) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    let unique = unique_name(path);
    let folder = path.parent()?.parent()?;
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for entry in entries.flatten() {
            if unique_name(&entry.path()) == unique {
                return Some(entry.path());
            }
        }
    }
    None
}

/// Maildir++ quota: first line `<bytes>S,<count>C`, then lines `<bytes> <count>` to add up.
fn read_maildirsize(path: &Path) -> Option<Quota> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let limit = lines.next()?.split(',').find_map(|part| {
        part.trim()
            .strip_suffix('S')
            .and_then(|n| n.parse::<u64>().ok())
    })?;
    let used: i64 = lines
        .filter_map(|l| l.split_whitespace().next()?.parse::<i64>().ok())
        .sum();
    Some(Quota {
        used: u64::try_from(used.max(0)).unwrap_or(0),
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_maildirsize() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("maildirsize");
        std::fs::write(&path, "1000000S,100C\n900000 3\n50000 1\n-10000 -1\n").expect("write");
        assert_eq!(
            read_maildirsize(&path),
            Some(Quota {
                used: 940_000,
                limit: 1_000_000
            })
        );
        std::fs::write(&path, "garbage").expect("write");
        assert_eq!(read_maildirsize(&path), None);
    }

    #[test]
    fn unique_name_ignores_flags() {
        assert_eq!(
            unique_name(Path::new("/m/cur/1700000000.M1P2.host:2,S")),
            "1700000000.M1P2.host"
        );
        assert_eq!(
            unique_name(Path::new("/m/new/1700000000.M1P2.host")),
            "1700000000.M1P2.host"
        );
    }
}
