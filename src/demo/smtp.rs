//! The demo shop's mail server: a small SMTP receiver on loopback that files mail into Maildirs.
//!
//! It stands in for the shop's real mail server so `supportwatch demo` can show the whole trip —
//! form → SMTP → support mailbox, and mail → support mailbox → auto-reply — without any external
//! service. It speaks just enough SMTP for lettre (EHLO, MAIL, RCPT, DATA, RSET, NOOP, QUIT),
//! bounds every line and message, and is only ever bound to 127.0.0.1.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Longest command line accepted (RFC 5321 allows 512 octets).
const MAX_LINE: usize = 1000;
/// Largest message accepted.
const MAX_MESSAGE: usize = 1 << 20;
/// An idle client is dropped after this long.
const IDLE: Duration = Duration::from_secs(30);

/// What the mail server does with mail for its local addresses.
#[derive(Clone)]
pub struct MailServer {
    /// Local address → its Maildir.
    pub mailboxes: Arc<HashMap<String, PathBuf>>,
    /// Local address whose mail is answered with an automatic acknowledgement.
    pub auto_reply_from: Option<String>,
    /// When set, mail is accepted and then silently dropped (a broken relay).
    pub broken: std::sync::Arc<super::shop::Breaks>,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl MailServer {
    /// Serves SMTP on `listener` until `stop` is cancelled.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(error = %e, "demo smtp: accept failed");
                        continue;
                    }
                },
            };
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = server.session(stream).await {
                    tracing::debug!(error = %e, "demo smtp: session ended");
                }
            });
        }
    }

    async fn session(&self, stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        write
            .write_all(b"220 demo-shop.test ESMTP demo mail server\r\n")
            .await?;
        let mut from = String::new();
        let mut recipients: Vec<String> = Vec::new();
        loop {
            let Some(line) = read_line(&mut reader).await? else {
                return Ok(());
            };
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-demo-shop.test\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 1048576\r\n"
            } else if upper.starts_with("HELO") {
                b"250 demo-shop.test\r\n"
            } else if upper.starts_with("MAIL FROM:") {
                from = address(&line["MAIL FROM:".len()..]);
                recipients.clear();
                b"250 2.1.0 Ok\r\n"
            } else if upper.starts_with("RCPT TO:") {
                let to = address(&line["RCPT TO:".len()..]);
                if self.mailboxes.contains_key(&to) {
                    recipients.push(to);
                    b"250 2.1.5 Ok\r\n"
                } else {
                    b"550 5.1.1 No such user here\r\n"
                }
            } else if upper == "DATA" {
                if recipients.is_empty() {
                    b"554 5.5.1 No valid recipients\r\n"
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    match read_data(&mut reader).await? {
                        Some(message) => {
                            self.deliver(&from, &recipients, &message);
                            recipients.clear();
                            b"250 2.0.0 Ok: queued\r\n"
                        }
                        None => b"552 5.3.4 Message too big\r\n",
                    }
                }
            } else if upper == "RSET" {
                recipients.clear();
                b"250 2.0.0 Ok\r\n"
            } else if upper == "NOOP" {
                b"250 2.0.0 Ok\r\n"
            } else if upper == "QUIT" {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            } else {
                b"502 5.5.2 Command not recognized\r\n"
            };
            write.write_all(reply).await?;
        }
    }

    fn deliver(&self, from: &str, recipients: &[String], message: &[u8]) {
        if self.broken.contains(&super::shop::Break::Email) {
            return;
        }
        for to in recipients {
            if let Some(dir) = self.mailboxes.get(to)
                && let Err(e) = write_maildir(dir, message)
            {
                tracing::warn!(error = %e, mailbox = %to, "demo smtp: cannot file mail");
            }
            // The shop's autoresponder: answers mail to support, quoting the original Message-ID
            // the way real autoresponders (sieve vacation, helpdesks) do.
            if self.auto_reply_from.as_deref() == Some(to.as_str())
                && !is_automatic(message)
                && let Some(dir) = self.mailboxes.get(from)
            {
                let reply = auto_reply(to, from, message);
                if let Err(e) = write_maildir(dir, reply.as_bytes()) {
                    tracing::warn!(error = %e, "demo smtp: cannot file the auto-reply");
                }
            }
        }
    }
}

async fn read_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = tokio::time::timeout(IDLE, read_bounded_line(reader, &mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client idle"))??;
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(String::from_utf8_lossy(&buf).trim_end().to_string()))
}

/// Reads one line of at most [`MAX_LINE`] bytes; longer lines are an error.
async fn read_bounded_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let n = reader
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if buf.len() > MAX_LINE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    Ok(n)
}

/// Reads a DATA section up to the lone dot, undoing dot-stuffing. `None` when too big.
async fn read_data<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    let mut too_big = false;
    loop {
        let mut line = Vec::new();
        let n = tokio::time::timeout(IDLE, read_bounded_line(reader, &mut line))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "client idle"))??;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed during DATA",
            ));
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok((!too_big).then_some(message));
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        if message.len() + content.len() > MAX_MESSAGE {
            too_big = true;
        } else {
            message.extend_from_slice(content);
        }
    }
}

/// `<user@host> SIZE=…` → `user@host`, lower-cased.
fn address(arg: &str) -> String {
    let arg = arg.trim();
    let inner = match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => &arg[a + 1..b],
        _ => arg.split_whitespace().next().unwrap_or(""),
    };
    inner.to_ascii_lowercase()
}

fn is_automatic(message: &[u8]) -> bool {
    let text = String::from_utf8_lossy(message).to_ascii_lowercase();
    let headers = text.split("\r\n\r\n").next().unwrap_or("");
    headers.contains("\nauto-submitted: auto-") || headers.contains("\nprecedence: bulk")
}

fn header(message: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let prefix = format!("{}:", name.to_ascii_lowercase());
    text.split("\r\n\r\n")
        .next()?
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].trim().to_string())
}

fn auto_reply(support: &str, to: &str, original: &[u8]) -> String {
    let in_reply_to = header(original, "Message-ID").unwrap_or_default();
    let date = humantime::format_rfc3339_seconds(SystemTime::now());
    format!(
        "From: Demo shop support <{support}>\r\nTo: <{to}>\r\nSubject: Auto: we received your message\r\n\
         Date: {date}\r\nIn-Reply-To: {in_reply_to}\r\nReferences: {in_reply_to}\r\nAuto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
         Здравствуйте! Мы получили ваше сообщение и ответим в течение 2 часов.\r\n\
         We received your message and will answer within 2 hours.\r\n"
    )
}

/// Files a message the Maildir way: write into `tmp/`, then rename into `new/` (atomic).
pub fn write_maildir(dir: &Path, message: &[u8]) -> std::io::Result<PathBuf> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}.demo-shop",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join("tmp").join(&name);
    std::fs::write(&tmp, message)?;
    let new = dir.join("new").join(&name);
    std::fs::rename(&tmp, &new)?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses() {
        assert_eq!(
            address(" <Support@Demo-Shop.test> SIZE=100"),
            "support@demo-shop.test"
        );
        assert_eq!(address("bare@x.test"), "bare@x.test");
        assert_eq!(address("<>"), "");
    }

    #[tokio::test]
    async fn data_is_unstuffed_and_bounded() {
        let input: &[u8] = b"line\r\n..dot\r\n.\r\n";
        let mut reader = BufReader::new(input);
        let data = read_data(&mut reader).await.expect("read").expect("fits");
        assert_eq!(data, b"line\r\n.dot\r\n");
        let long = vec![b'a'; 2000];
        let mut reader = BufReader::new(&long[..]);
        assert!(
            read_data(&mut reader).await.is_err(),
            "over-long line refused"
        );
    }
}
