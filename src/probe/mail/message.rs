//! The test message a `mail` check sends: what makes it recognisable, and what it must not carry.
//!
//! The run's token travels four ways, because the far end keeps different parts: the support
//! mailbox keeps everything; an autoresponder quotes the Message-ID in `In-Reply-To` and
//! `References` and usually the subject; a helpdesk that turns mail into tickets often keeps only
//! subject and body. So the token is in the Message-ID (`<TOKEN@supportwatch>`), in an
//! `X-Supportwatch-Token` header, and (by default) in the subject and the body.
//!
//! Deliberately absent: `Auto-Submitted` and `Precedence`. They are the polite marks of machine
//! mail, but RFC 3834 tells autoresponders (sieve vacation, Exchange, helpdesks) never to answer
//! mail that carries them — and the acknowledgement is exactly what `auto_reply` must see. The
//! message says in words that it is an automated test instead, and `X-Supportwatch-Token` lets a
//! shop filter it if it wants to.

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MessageBuilder};
use std::time::SystemTime;

/// Header that carries the run's token (the mail counterpart of `crate::TOKEN_HEADER`).
pub const TOKEN_HEADER: &str = "X-Supportwatch-Token";

/// Default subject: says what it is and carries the token, so it survives ticket systems.
pub const DEFAULT_SUBJECT: &str = "[supportwatch] automated test {{token}}";

/// Default body: says it is an automated test, asks nobody to act, and carries the token.
pub const DEFAULT_BODY: &str = "This is an automated test of the support mailbox, sent by \
supportwatch to prove that mail to this address arrives (and is acknowledged). Please ignore it; \
no answer is needed.\n\nTest token: {{token}}\nCheck: {{check}}\nSent: {{now}}\n";

/// The Message-ID of a run's message. Autoresponders quote it, so it carries the token.
pub fn message_id(token: &str) -> String {
    format!("<{token}@supportwatch>")
}

/// What one run sends.
pub struct Draft<'a> {
    /// `From:` and envelope sender (where the auto-reply goes).
    pub from: &'a Mailbox,
    /// `To:` and the single envelope recipient.
    pub to: &'a Mailbox,
    /// Rendered subject.
    pub subject: String,
    /// Rendered body (plain text, any script).
    pub body: String,
    /// The run's correlation token.
    pub token: &'a str,
    /// The `Date:` header.
    pub date: SystemTime,
}

/// Builds the RFC 5322 message. lettre picks 7bit, quoted-printable or base64 for the body and
/// RFC 2047 for a non-ASCII subject, so the wire form is ASCII and needs no 8BITMIME.
pub fn build(draft: &Draft<'_>) -> Result<Message, String> {
    let builder: MessageBuilder = Message::builder()
        .from(draft.from.clone())
        .to(draft.to.clone())
        .subject(draft.subject.clone())
        .date(draft.date)
        .message_id(Some(message_id(draft.token)))
        .user_agent(crate::USER_AGENT.to_string())
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str(TOKEN_HEADER),
            draft.token.to_string(),
        ))
        .header(ContentType::TEXT_PLAIN);
    builder
        .body(draft.body.clone())
        .map_err(|e| format!("cannot build the test message: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft<'a>(from: &'a Mailbox, to: &'a Mailbox, subject: &str, body: &str) -> Draft<'a> {
        Draft {
            from,
            to,
            subject: subject.into(),
            body: body.into(),
            token: "sw-support-mail-1795430400-0a1b2c3d",
            date: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn carries_the_token_and_no_auto_submitted_marks() {
        let from: Mailbox = "Monitoring <monitor@example.ru>".parse().unwrap();
        let to: Mailbox = "support@shop.example".parse().unwrap();
        let message = build(&draft(&from, &to, "test", "automated test")).unwrap();
        let raw = String::from_utf8(message.formatted()).unwrap();
        assert!(
            raw.contains("Message-ID: <sw-support-mail-1795430400-0a1b2c3d@supportwatch>\r\n"),
            "{raw}"
        );
        assert!(
            raw.contains("X-Supportwatch-Token: sw-support-mail-1795430400-0a1b2c3d\r\n"),
            "{raw}"
        );
        let lower = raw.to_ascii_lowercase();
        assert!(!lower.contains("auto-submitted"), "{raw}");
        assert!(!lower.contains("precedence"), "{raw}");
        let envelope = message.envelope();
        assert_eq!(
            envelope.from().map(|a| a.to_string()).as_deref(),
            Some("monitor@example.ru")
        );
        assert_eq!(envelope.to().len(), 1);
    }

    #[test]
    fn cyrillic_subject_and_body_go_out_as_ascii_and_decode_back() {
        let from: Mailbox = "Мониторинг <monitor@example.ru>".parse().unwrap();
        let to: Mailbox = "support@shop.example".parse().unwrap();
        let subject = "Автоматический тест sw-support-mail-1795430400-0a1b2c3d";
        let body = "Это автоматическая проверка службы поддержки, отвечать не нужно.";
        let message = build(&draft(&from, &to, subject, body)).unwrap();
        let raw = message.formatted();
        assert!(raw.is_ascii(), "the wire form must not need 8BITMIME");
        let decoded = crate::mailbox::message::decode(&raw);
        assert_eq!(decoded.subject, subject);
        assert!(decoded.text.contains(body), "{}", decoded.text);
        assert_eq!(decoded.tokens, ["sw-support-mail-1795430400-0a1b2c3d"]);
    }

    #[test]
    fn default_templates_carry_the_token_and_say_it_is_a_test() {
        assert!(DEFAULT_SUBJECT.contains("{{token}}"));
        assert!(DEFAULT_BODY.contains("{{token}}"));
        assert!(DEFAULT_BODY.contains("automated test"));
    }
}
