//! The `incidents` table: one row per alert of a check, from the moment it fired to the moment
//! it resolved, written by the alerting task in the same transaction as the alert state.

use super::{Store, StoreError};
use rusqlite::params;

/// One incident: a check's alert from firing to resolve.
#[derive(Clone, Debug, PartialEq)]
pub struct Incident {
    /// Check name.
    pub check: String,
    /// The check's shop.
    pub shop: String,
    /// The check's channel.
    pub channel: String,
    /// The check's kind.
    pub kind: String,
    /// When the failures began, unix seconds (the alert's `since`; with the check, its key).
    pub started_at: f64,
    /// When it resolved, unix seconds; `None` while it lasts.
    pub ended_at: Option<f64>,
    /// Bounded failure reason (`no_reply`, `timeout`, ...).
    pub reason_kind: String,
    /// What failed, as the alert said it.
    pub reason: String,
}

/// A change to write: an incident began, or ended (`ended_at` set). Writing one twice is
/// harmless, so a change can be re-written by a catch-up after a failed write.
pub type IncidentChange = Incident;

/// Writes `changes`: a new incident is inserted; one already there keeps its start and reason
/// and takes the end.
pub(super) fn write(
    tx: &rusqlite::Transaction<'_>,
    changes: &[IncidentChange],
) -> rusqlite::Result<()> {
    let mut upsert = tx.prepare_cached(
        "INSERT INTO incidents (check_name, started_at, shop, channel, kind, ended_at,
                                reason_kind, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (check_name, started_at)
         DO UPDATE SET ended_at = COALESCE(excluded.ended_at, ended_at)",
    )?;
    for i in changes {
        upsert.execute(params![
            i.check,
            i.started_at,
            i.shop,
            i.channel,
            i.kind,
            i.ended_at,
            i.reason_kind,
            i.reason
        ])?;
    }
    Ok(())
}

impl Store {
    /// The incidents of `shop` that overlap `[from, to)` (unix seconds), oldest first.
    pub fn incidents(&self, shop: &str, from: f64, to: f64) -> Result<Vec<Incident>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT check_name, shop, channel, kind, started_at, ended_at, reason_kind, reason
                 FROM incidents
                 WHERE shop = ?1 AND started_at < ?3 AND (ended_at IS NULL OR ended_at >= ?2)
                 ORDER BY started_at, check_name",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![shop, from, to], |r| {
                Ok(Incident {
                    check: r.get(0)?,
                    shop: r.get(1)?,
                    channel: r.get(2)?,
                    kind: r.get(3)?,
                    started_at: r.get(4)?,
                    ended_at: r.get(5)?,
                    reason_kind: r.get(6)?,
                    reason: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}
