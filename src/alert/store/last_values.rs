//! The last value observed of what changes slowly and matters to owners: each TLS target's
//! certificate expiry and each mailbox's quota fill. Metrics hold them only while the daemon
//! runs and only for checks that ran since; the status page and the weekly digest read them
//! here, written in the transaction of the run that observed them.

use super::{RunRecord, Store, StoreError};
use rusqlite::params;

/// What a last value measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// A TLS target's certificate expiry (the earliest not-after of its chain), unix seconds.
    CertNotAfter,
    /// A mailbox's storage quota, used / limit.
    MailboxFill,
}

impl ValueKind {
    fn as_str(self) -> &'static str {
        match self {
            ValueKind::CertNotAfter => "cert_not_after",
            ValueKind::MailboxFill => "mailbox_fill",
        }
    }

    fn parse(text: &str) -> Option<ValueKind> {
        [ValueKind::CertNotAfter, ValueKind::MailboxFill]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// One value a run observed.
#[derive(Clone, Debug, PartialEq)]
pub struct LastValue {
    /// What it measures.
    pub kind: ValueKind,
    /// The TLS target as configured, or the mailbox's name under `mailboxes:`.
    pub subject: String,
    /// The value.
    pub value: f64,
}

/// A stored last value with who observed it when.
#[derive(Clone, Debug, PartialEq)]
pub struct LastValueRow {
    /// The value.
    pub value: LastValue,
    /// The check whose run observed it.
    pub check: String,
    /// That check's shop.
    pub shop: String,
    /// The run's start, unix seconds.
    pub observed_at: f64,
}

/// Writes the values `runs` observed, each replacing the last one of its check and subject.
pub(super) fn write(tx: &rusqlite::Transaction<'_>, runs: &[RunRecord]) -> rusqlite::Result<()> {
    if runs.iter().all(|r| r.values.is_empty()) {
        return Ok(());
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO last_values (kind, subject, check_name, shop, value, observed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (kind, subject, check_name)
         DO UPDATE SET shop = ?4, value = ?5, observed_at = ?6 WHERE observed_at <= ?6",
    )?;
    for run in runs {
        for v in &run.values {
            upsert.execute(params![
                v.kind.as_str(),
                v.subject,
                run.check,
                run.shop,
                v.value,
                run.started_at
            ])?;
        }
    }
    Ok(())
}

impl Store {
    /// The certificate expiries observed by `shop`'s checks, and the newest fill of each of
    /// `mailboxes` whoever observed it; by kind, subject and check.
    pub fn last_values(
        &self,
        shop: &str,
        mailboxes: &[&str],
    ) -> Result<Vec<LastValueRow>, StoreError> {
        let conn = self.conn();
        let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Option<LastValueRow>> {
            let kind: String = r.get(0)?;
            Ok(ValueKind::parse(&kind).map(|kind| LastValueRow {
                value: LastValue {
                    kind,
                    subject: r.get(1).unwrap_or_default(),
                    value: r.get(4).unwrap_or_default(),
                },
                check: r.get(2).unwrap_or_default(),
                shop: r.get(3).unwrap_or_default(),
                observed_at: r.get(5).unwrap_or_default(),
            }))
        };
        let mut out = Vec::new();
        let mut certs = conn
            .prepare_cached(
                "SELECT kind, subject, check_name, shop, value, observed_at FROM last_values
                 WHERE shop = ?1 AND kind = ?2 ORDER BY subject, check_name",
            )
            .map_err(|e| self.err(e))?;
        for row in certs
            .query_map(params![shop, ValueKind::CertNotAfter.as_str()], read)
            .map_err(|e| self.err(e))?
        {
            out.extend(row.map_err(|e| self.err(e))?);
        }
        let mut fill = conn
            .prepare_cached(
                "SELECT kind, subject, check_name, shop, value, observed_at FROM last_values
                 WHERE kind = ?1 AND subject = ?2 ORDER BY observed_at DESC LIMIT 1",
            )
            .map_err(|e| self.err(e))?;
        for mailbox in mailboxes {
            for row in fill
                .query_map(params![ValueKind::MailboxFill.as_str(), mailbox], read)
                .map_err(|e| self.err(e))?
            {
                out.extend(row.map_err(|e| self.err(e))?);
            }
        }
        Ok(out)
    }
}
