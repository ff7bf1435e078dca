//! STARTTLS: just enough SMTP, IMAP and POP3 to reach the server's go-ahead for TLS.
//!
//! Every line read is bounded ([`MAX_LINE`] bytes, [`MAX_LINES`] per connection), so a hostile or
//! broken server cannot make the probe allocate without limit; the runner's timeout bounds the
//! time. Bytes the server sends after its go-ahead are refused rather than dropped silently: a
//! client that read them later would take plain text for TLS-protected data (CVE-2011-0411).

use super::{GOODBYE, Step, printable};
use crate::outcome::FailureKind;
use crate::value::Text;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest line accepted from a server, newline included.
const MAX_LINE: usize = 4096;
/// Most lines accepted from a server during one dialogue.
const MAX_LINES: usize = 100;

/// The protocol spoken on a target's connection, for STARTTLS and the goodbye.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Smtp,
    Imap,
    Pop3,
}

impl Protocol {
    /// Lower-case name, for messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            Protocol::Smtp => "smtp",
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
        }
    }
    /// The polite way to end a session, line ending included.
    pub(super) fn goodbye(self) -> &'static str {
        match self {
            Protocol::Smtp | Protocol::Pop3 => "QUIT\r\n",
            Protocol::Imap => "a2 LOGOUT\r\n",
        }
    }
}

/// A plain connection that reads bounded lines.
struct Dialogue {
    reader: BufReader<TcpStream>,
    lines: usize,
}

impl Dialogue {
    async fn line(&mut self) -> Result<String, String> {
        if self.lines >= MAX_LINES {
            return Err(format!("sent more than {MAX_LINES} lines"));
        }
        self.lines += 1;
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|e| format!("failed: {e}"))?;
        match (n, buf.last()) {
            (0, _) => Err("closed the connection".into()),
            (_, Some(b'\n')) => Ok(String::from_utf8_lossy(&buf).trim_end().to_string()),
            _ if buf.len() >= MAX_LINE => Err("sent a line longer than 4 KiB".into()),
            _ => Err("closed the connection in the middle of a line".into()),
        }
    }

    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.send_raw(&format!("{line}\r\n")).await
    }

    async fn send_raw(&mut self, text: &str) -> Result<(), String> {
        self.reader
            .get_mut()
            .write_all(text.as_bytes())
            .await
            .map_err(|e| format!("failed: {e}"))
    }

    /// One SMTP reply (`250-a`, `250-b`, `250 c`): its code and the text of each line.
    async fn smtp_reply(&mut self) -> Result<(u16, Vec<String>), String> {
        let mut texts = Vec::new();
        loop {
            let line = self.line().await?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| {
                    format!("sent `{}`, which is not an SMTP reply", printable(&line))
                })?;
            texts.push(line.get(4..).unwrap_or_default().to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, texts));
            }
        }
    }
}

/// Speaks `protocol` up to the server's go-ahead for TLS and returns the bare connection.
pub(super) async fn starttls(tcp: TcpStream, protocol: Protocol, label: &Text) -> Step<TcpStream> {
    let mut dialogue = Dialogue {
        reader: BufReader::new(tcp),
        lines: 0,
    };
    let server = format!("{} server at {label}", protocol.name());
    let result = match protocol {
        Protocol::Smtp => smtp_starttls(&mut dialogue).await,
        Protocol::Imap => imap_starttls(&mut dialogue).await,
        Protocol::Pop3 => pop3_starttls(&mut dialogue).await,
    };
    if let Err((kind, why)) = result {
        if kind == FailureKind::Protocol {
            // Polite and best effort: the server is still talking to us.
            let _ = tokio::time::timeout(GOODBYE, dialogue.send_raw(protocol.goodbye())).await;
        }
        return Err((kind, format!("{server} {why}")));
    }
    // Bytes sent before the handshake would be read as if they came over TLS (CVE-2011-0411).
    if !dialogue.reader.buffer().is_empty() {
        return Err((
            FailureKind::Protocol,
            format!("{server} sent data after agreeing to start TLS"),
        ));
    }
    Ok(dialogue.reader.into_inner())
}

fn protocol_error(why: String) -> (FailureKind, String) {
    (FailureKind::Protocol, why)
}

async fn smtp_starttls(d: &mut Dialogue) -> Step<()> {
    let (code, text) = d.smtp_reply().await.map_err(protocol_error)?;
    if code != 220 {
        return Err(protocol_error(format!(
            "greeted with `{code} {}`, expected 220",
            printable(&text.join(" "))
        )));
    }
    d.send("EHLO supportwatch.local")
        .await
        .map_err(protocol_error)?;
    let (code, lines) = d.smtp_reply().await.map_err(protocol_error)?;
    if code != 250 {
        return Err(protocol_error(format!(
            "answered EHLO with `{code} {}`",
            printable(&lines.join(" "))
        )));
    }
    let offered = lines.iter().skip(1).any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("STARTTLS"))
    });
    if !offered {
        return Err(protocol_error("does not offer STARTTLS".into()));
    }
    d.send("STARTTLS").await.map_err(protocol_error)?;
    let (code, text) = d.smtp_reply().await.map_err(protocol_error)?;
    if code != 220 {
        return Err(protocol_error(format!(
            "refused STARTTLS: `{code} {}`",
            printable(&text.join(" "))
        )));
    }
    Ok(())
}

async fn imap_starttls(d: &mut Dialogue) -> Step<()> {
    let greeting = d.line().await.map_err(protocol_error)?;
    if !starts_with_ignore_case(&greeting, "* OK") {
        return Err(protocol_error(format!(
            "greeted with `{}`, expected `* OK`",
            printable(&greeting)
        )));
    }
    d.send("a1 STARTTLS").await.map_err(protocol_error)?;
    loop {
        // Untagged lines (`* CAPABILITY …`) may come first; the line budget bounds this loop.
        let line = d.line().await.map_err(protocol_error)?;
        if starts_with_ignore_case(&line, "a1 OK") {
            return Ok(());
        }
        if starts_with_ignore_case(&line, "a1 ") {
            return Err(protocol_error(format!(
                "does not offer STARTTLS: `{}`",
                printable(&line)
            )));
        }
    }
}

async fn pop3_starttls(d: &mut Dialogue) -> Step<()> {
    let greeting = d.line().await.map_err(protocol_error)?;
    if !greeting.starts_with("+OK") {
        return Err(protocol_error(format!(
            "greeted with `{}`, expected `+OK`",
            printable(&greeting)
        )));
    }
    d.send("STLS").await.map_err(protocol_error)?;
    let answer = d.line().await.map_err(protocol_error)?;
    if !answer.starts_with("+OK") {
        return Err(protocol_error(format!(
            "does not offer STLS (STARTTLS): `{}`",
            printable(&answer)
        )));
    }
    Ok(())
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A dialogue with a loopback server that sends `script` and then waits.
    async fn dialogue_with(script: Vec<u8>) -> Dialogue {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.write_all(&script).await;
            let mut sink = [0u8; 64];
            let _ = tcp.read(&mut sink).await;
        });
        Dialogue {
            reader: BufReader::new(TcpStream::connect(addr).await.unwrap()),
            lines: 0,
        }
    }

    #[tokio::test]
    async fn reads_multi_line_smtp_replies() {
        let mut d =
            dialogue_with(b"250-mail.test\r\n250-SIZE 10\r\n250 STARTTLS\r\n".to_vec()).await;
        let (code, lines) = d.smtp_reply().await.unwrap();
        assert_eq!(code, 250);
        assert_eq!(lines, ["mail.test", "SIZE 10", "STARTTLS"]);
    }

    #[tokio::test]
    async fn refuses_overlong_lines_and_garbage() {
        let mut d = dialogue_with(vec![b'x'; 10_000]).await;
        assert_eq!(d.line().await.unwrap_err(), "sent a line longer than 4 KiB");
        let mut d = dialogue_with(b"\xff\xfe hello\r\n".to_vec()).await;
        let err = d.smtp_reply().await.unwrap_err();
        assert!(err.contains("not an SMTP reply"), "{err}");
    }
}
