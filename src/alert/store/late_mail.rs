//! The `late_mail` table: tokens of runs that gave up on their test mail (see
//! [`crate::mailbox::late`]), kept so that a restart still deletes the mail when it turns up.
//!
//! Written by the daemon's late-mail writer ([`crate::alert::late_mail`]) off the runs' path, in
//! batches; after failed writes it replaces the table with what memory holds, as the alerting
//! task's catch-up does for its tables.

use super::{Store, StoreError};
use crate::alert::engine::secs;
use crate::mailbox::late::{LateChange, LateToken};
use rusqlite::params;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn time(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::try_from_secs_f64(secs).unwrap_or_default()
}

impl Store {
    /// Every remembered token, oldest first.
    pub fn late_tokens(&self) -> Result<Vec<LateToken>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT mailbox, token, check_name, sent_at, expires_at FROM late_mail
                 ORDER BY sent_at",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(LateToken {
                    mailbox: r.get(0)?,
                    token: r.get(1)?,
                    check: r.get(2)?,
                    sent_at: time(r.get(3)?),
                    expires_at: time(r.get(4)?),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Applies `changes`, in order, in one transaction.
    pub fn write_late_changes(&self, changes: &[LateChange]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        apply(&tx, changes).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Replaces every remembered token with `tokens` (the catch-up after failed writes).
    pub fn replace_late_tokens(&self, tokens: &[LateToken]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = self.begin(&mut conn)?;
        tx.execute("DELETE FROM late_mail", [])
            .map_err(|e| self.err(e))?;
        let changes: Vec<LateChange> = tokens.iter().cloned().map(LateChange::Remembered).collect();
        apply(&tx, &changes).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }
}

fn apply(tx: &rusqlite::Transaction<'_>, changes: &[LateChange]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR REPLACE INTO late_mail (mailbox, token, check_name, sent_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut delete =
        tx.prepare_cached("DELETE FROM late_mail WHERE mailbox = ?1 AND token = ?2")?;
    for change in changes {
        match change {
            LateChange::Remembered(t) => {
                insert.execute(params![
                    t.mailbox,
                    t.token,
                    t.check,
                    secs(t.sent_at),
                    secs(t.expires_at)
                ])?;
            }
            LateChange::Forgotten { token: t, .. } => {
                delete.execute(params![t.mailbox, t.token])?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::late::Forgotten;

    fn token(mailbox: &str, token: &str, sent: u64) -> LateToken {
        LateToken {
            mailbox: mailbox.into(),
            token: token.into(),
            check: "support-mail".into(),
            sent_at: UNIX_EPOCH + Duration::from_secs(sent),
            expires_at: UNIX_EPOCH + Duration::from_secs(sent + 86_400),
        }
    }

    #[test]
    fn tokens_survive_a_reopen_and_the_catch_up_replaces_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sw.db");
        let a = token("support", "sw-support-mail-100-00000001", 100);
        let b = token("customer", "sw-support-mail-100-00000001", 100);
        let c = token("support", "sw-support-mail-200-00000002", 200);
        {
            let store = Store::open(&path).expect("open");
            store
                .write_late_changes(&[
                    LateChange::Remembered(a.clone()),
                    LateChange::Remembered(b.clone()),
                    LateChange::Remembered(c.clone()),
                    LateChange::Forgotten {
                        token: b.clone(),
                        why: Forgotten::Deleted { messages: 1 },
                    },
                ])
                .expect("write");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.late_tokens().expect("read"), vec![a.clone(), c]);
        store
            .replace_late_tokens(std::slice::from_ref(&b))
            .expect("catch up");
        assert_eq!(store.late_tokens().expect("read"), vec![b]);
    }

    #[test]
    fn a_refused_write_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("sw.db")).expect("open");
        store.refuse_writes(true);
        let a = token("support", "sw-support-mail-100-00000001", 100);
        assert!(
            store
                .write_late_changes(&[LateChange::Remembered(a)])
                .is_err()
        );
    }
}
