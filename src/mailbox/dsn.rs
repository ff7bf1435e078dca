//! Delivery status notifications (RFC 3464 bounces): recognising one and reading why.
//!
//! When a mail server cannot deliver a check's message (the mailbox is full, the address is
//! gone) it sends a DSN back to the envelope sender: `multipart/report;
//! report-type=delivery-status` with a `message/delivery-status` part (per-message fields, then
//! one block per recipient with `Action`, `Status`, `Diagnostic-Code`) and the original message
//! or its headers (`message/rfc822`, `text/rfc822-headers`), which carry the run's token. The
//! parser is tolerant: field names in any case, folded lines, missing fields, unknown fields —
//! real MTAs differ, and a DSN that cannot be read fully still names what it can.

use mail_parser::{Message, MessageParser, MimeHeaders};

/// What a delivery status notification says about the (first failed) recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dsn {
    /// `Action` of the recipient: `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: Option<String>,
    /// `Status`, an RFC 3463 enhanced code such as `5.2.2`.
    pub status: Option<String>,
    /// `Diagnostic-Code` without its type (`smtp; `): the remote server's answer.
    pub diagnostic: Option<String>,
    /// `Final-Recipient` without its type (`rfc822; `).
    pub recipient: Option<String>,
    /// `Original-Envelope-Id` of the report, when the sender asked for one.
    pub envelope_id: Option<String>,
}

impl Dsn {
    /// Whether the message was not delivered for good (a bounce, not a delay warning).
    pub fn is_failure(&self) -> bool {
        match self
            .action
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("failed") => true,
            Some(_) => false,
            // No Action: go by the status class (5 = permanent failure).
            None => self.status.as_deref().is_some_and(|s| s.starts_with('5')),
        }
    }

    /// `5.2.2 mailbox full (552 5.2.2 <…> Quota exceeded …)`: the status, what it means, and
    /// the server's own words.
    pub fn summary(&self) -> String {
        let mut text = match &self.status {
            Some(status) => match meaning(status) {
                Some(words) => format!("{status} {words}"),
                None => status.clone(),
            },
            None => "no status given".to_string(),
        };
        if let Some(diagnostic) = &self.diagnostic {
            text.push_str(&format!(" ({diagnostic})"));
        }
        text
    }
}

/// Reads `raw` as a delivery status notification; `None` when it is not one.
pub fn parse(raw: &[u8]) -> Option<Dsn> {
    from_message(&MessageParser::default().parse(raw)?)
}

/// Reads an already parsed message as a delivery status notification; `None` when it is not one.
pub fn from_message(message: &Message<'_>) -> Option<Dsn> {
    let top = message.content_type()?;
    let is_report = top.ctype().eq_ignore_ascii_case("multipart")
        && top
            .subtype()
            .is_some_and(|s| s.eq_ignore_ascii_case("report"))
        && top
            .attribute("report-type")
            .is_some_and(|t| t.eq_ignore_ascii_case("delivery-status"));
    if !is_report {
        return None;
    }
    // The status part; a report without one is still a bounce, just a mute one.
    let status = message.parts.iter().find(|part| {
        part.content_type().is_some_and(|ct| {
            ct.ctype().eq_ignore_ascii_case("message")
                && ct
                    .subtype()
                    .is_some_and(|s| s.eq_ignore_ascii_case("delivery-status"))
        })
    });
    Some(match status {
        Some(part) => fields(&String::from_utf8_lossy(part.contents())),
        None => Dsn::default(),
    })
}

/// Reads the field blocks of a `message/delivery-status` body.
pub fn fields(body: &str) -> Dsn {
    let mut dsn = Dsn::default();
    // Blocks are separated by blank lines: the per-message block first, then one per recipient.
    let mut blocks: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            if blocks.last().is_some_and(|b| !b.is_empty()) {
                blocks.push(Vec::new());
            }
            continue;
        }
        let Some(block) = blocks.last_mut() else {
            continue;
        };
        if line.starts_with([' ', '\t']) {
            // A folded line continues the previous field.
            if let Some((_, value)) = block.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            block.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    let field = |block: &[(String, String)], name: &str| {
        block
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    for block in &blocks {
        if let Some(id) = field(block, "original-envelope-id") {
            dsn.envelope_id = Some(id);
        }
    }
    // The recipient that failed, else the first recipient block at all.
    let recipients: Vec<&Vec<(String, String)>> = blocks
        .iter()
        .filter(|b| {
            b.iter()
                .any(|(n, _)| matches!(n.as_str(), "final-recipient" | "action" | "status"))
        })
        .collect();
    let chosen = recipients
        .iter()
        .find(|b| field(b, "action").is_some_and(|a| a.eq_ignore_ascii_case("failed")))
        .or(recipients.first());
    if let Some(block) = chosen {
        dsn.action = field(block, "action").map(|a| a.to_ascii_lowercase());
        dsn.status = field(block, "status").map(|s| {
            // `5.2.2 (mailbox full)` is seen in the wild: keep the code only.
            s.split_whitespace().next().unwrap_or_default().to_string()
        });
        dsn.diagnostic = field(block, "diagnostic-code").map(|d| without_type(&d));
        dsn.recipient = field(block, "final-recipient").map(|r| without_type(&r));
    }
    dsn
}

/// `smtp; 552 …` → `552 …`, `rfc822; a@b` → `a@b`.
fn without_type(value: &str) -> String {
    match value.split_once(';') {
        Some((kind, rest)) if !kind.contains(' ') => rest.trim().to_string(),
        _ => value.trim().to_string(),
    }
}

/// Plain words for the common RFC 3463 codes, by subject and detail (the class only says
/// permanent or transient).
fn meaning(status: &str) -> Option<&'static str> {
    let detail = status.split_once('.')?.1;
    Some(match detail {
        "1.1" => "no such mailbox",
        "1.2" => "no such domain",
        "1.10" => "recipient address has null MX",
        "2.1" => "mailbox disabled",
        "2.2" => "mailbox full",
        "2.3" => "message too large for the mailbox",
        "3.4" => "message too large for the system",
        "4.4" => "unable to route",
        "4.7" => "delivery time expired",
        "7.1" => "delivery not authorized, message refused",
        "7.26" => "multiple authentication checks failed",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real bounces from the test postfix (dovecot LMTP refusing over quota), once with the
    /// whole original attached and once with only its headers (postfix's choice for big mail).
    const FULL_MESSAGE: &str =
        include_str!("../../tests/fixtures/dsn/postfix-quota-full-message.eml");
    const HEADERS_ONLY: &str =
        include_str!("../../tests/fixtures/dsn/postfix-quota-headers-only.eml");

    #[test]
    fn postfix_quota_bounces_are_read() {
        for (sample, token) in [
            (FULL_MESSAGE, "sw-bounce-1795430400-0a1b2c3e"),
            (HEADERS_ONLY, "sw-bounce-1795430400-0a1b2c3f"),
        ] {
            let dsn = parse(sample.as_bytes()).expect("a DSN");
            assert_eq!(
                dsn,
                Dsn {
                    action: Some("failed".into()),
                    status: Some("5.2.2".into()),
                    diagnostic: Some(
                        "552 5.2.2 <full@test.local> Quota exceeded (mailbox for user is full)"
                            .into()
                    ),
                    recipient: Some("full@test.local".into()),
                    envelope_id: None,
                }
            );
            assert!(dsn.is_failure());
            assert_eq!(
                dsn.summary(),
                "5.2.2 mailbox full (552 5.2.2 <full@test.local> Quota exceeded (mailbox for \
                 user is full))"
            );
            // The token of the bounced message is found in the attached original or headers.
            let decoded = super::super::message::decode(sample.as_bytes());
            assert_eq!(decoded.tokens, vec![token.to_string()]);
        }
    }

    #[test]
    fn crlf_odd_case_and_a_delay_warning() {
        let raw = "From: MAILER-DAEMON@mx.example\r\nSubject: Delayed Mail\r\n\
             Content-Type: Multipart/Report; Report-Type=\"Delivery-Status\"; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nStill trying.\r\n\
             --b\r\nContent-Type: message/delivery-status\r\n\r\n\
             reporting-mta: dns; mx.example\r\noriginal-envelope-id: sw-x-1-0\r\n\r\n\
             final-recipient: RFC822;support@shop.example\r\nACTION: Delayed\r\n\
             STATUS: 4.4.7 (delivery time expired)\r\n\r\n--b--\r\n";
        let dsn = parse(raw.as_bytes()).expect("a DSN");
        assert_eq!(dsn.action.as_deref(), Some("delayed"));
        assert_eq!(dsn.status.as_deref(), Some("4.4.7"));
        assert_eq!(dsn.envelope_id.as_deref(), Some("sw-x-1-0"));
        assert_eq!(dsn.recipient.as_deref(), Some("support@shop.example"));
        assert!(!dsn.is_failure(), "a delay warning is not a bounce");
        assert_eq!(dsn.summary(), "4.4.7 delivery time expired");
    }

    #[test]
    fn the_failed_recipient_is_chosen_and_missing_fields_are_tolerated() {
        let dsn = fields(
            "Reporting-MTA: dns; mx\n\nFinal-Recipient: rfc822; ok@shop\nAction: delivered\n\
             Status: 2.0.0\n\nFinal-Recipient: rfc822; gone@shop\nAction: failed\nStatus: 5.1.1\n",
        );
        assert_eq!(dsn.recipient.as_deref(), Some("gone@shop"));
        assert_eq!(dsn.summary(), "5.1.1 no such mailbox");
        let mute = fields("Final-Recipient: rfc822; x@y\n");
        assert_eq!(mute.summary(), "no status given");
        assert!(!mute.is_failure());
        assert!(
            fields("Status: 5.9.9\n").is_failure(),
            "no Action: by class"
        );
    }

    #[test]
    fn ordinary_mail_and_other_reports_are_not_dsns() {
        assert_eq!(parse(b"Subject: hi\r\n\r\nbody\r\n"), None);
        let mdn = "Content-Type: multipart/report; report-type=disposition-notification; \
                   boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nread\r\n--b--\r\n";
        assert_eq!(
            parse(mdn.as_bytes()),
            None,
            "a read receipt is not a bounce"
        );
        assert_eq!(parse(b"\xff\xfe\x00garbage"), None);
    }
}
