//! Just enough of `/proc` and `kill(2)` to make sure no chromium outlives its session.
//!
//! chromedriver runs in its own process group, so killing the group takes every chromium it
//! started with it. A single session's browser is killed as a tree: its descendants are collected
//! *before* any signal is sent, because once the browser dies its children are re-parented to
//! init and the tree can no longer be found.

use rustix::process::{Pid, Signal};
use std::collections::HashMap;

/// `(ppid, pgid)` of a process, or `None` if it is gone or a zombie.
pub(crate) fn parent_and_group(pid: u32) -> Option<(u32, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may itself contain spaces or `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some((ppid, pgid))
}

/// Whether `pid` is running (a zombie is not).
pub(crate) fn alive(pid: u32) -> bool {
    parent_and_group(pid).is_some()
}

/// Every live process id.
fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Live members of process group `pgid`.
pub(crate) fn group_members(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|pid| parent_and_group(*pid).is_some_and(|(_, g)| g == pgid))
        .collect()
}

/// `root` and all its live descendants.
pub(crate) fn tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all_pids() {
        if let Some((ppid, _)) = parent_and_group(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&pid) = out.get(i) {
        out.extend(children.get(&pid).into_iter().flatten());
        i += 1;
    }
    out
}

/// Whether `pid`'s command line contains `marker` (guards against killing a reused pid).
pub(crate) fn cmdline_contains(pid: u32, marker: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).contains(marker))
        .unwrap_or(false)
}

/// SIGKILLs `root` and its descendants, if `root` is still the process whose command line holds
/// `marker` (a session's private profile directory). Returns how many were signalled.
pub(crate) fn kill_tree(root: u32, marker: &str) -> usize {
    if !alive(root) || !cmdline_contains(root, marker) {
        return 0;
    }
    tree(root).into_iter().filter(|pid| kill(*pid)).count()
}

fn kill(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return false;
    };
    rustix::process::kill_process(pid, Signal::KILL).is_ok()
}

/// SIGKILLs every process in group `pgid` (chromedriver and every chromium it started).
///
/// A group id stays reserved while any member lives, so this cannot hit a stranger's group as
/// long as it is called while the driver's group may still have members; after that, ESRCH.
pub(crate) fn kill_group(pgid: u32) {
    if let Some(pgid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        // ESRCH (nothing left) is the normal answer after a crash; nothing to report.
        let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    }
}
