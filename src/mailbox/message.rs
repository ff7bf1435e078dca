//! Reading a raw message for correlation tokens: headers and every text part, decoded.
//!
//! Tokens are looked for in the decoded text (quoted-printable and base64 bodies, RFC 2047
//! headers, any charset mail-parser knows), because a shop's mail software re-encodes what the
//! form submitted: a Cyrillic message comes back as quoted-printable UTF-8 with soft line breaks
//! that may split the token in the raw bytes.

use crate::outcome::find_tokens;

/// What a message says, decoded, as far as delivery checks care.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    /// The decoded subject.
    pub subject: String,
    /// Header lines (unfolded, decoded where mail-parser could) followed by every text part.
    pub text: String,
    /// Correlation tokens found anywhere in `text`.
    pub tokens: Vec<String>,
    /// Set when the message is a delivery status notification (a bounce of the message whose
    /// tokens it carries), which is never the delivery or the acknowledgement itself.
    pub dsn: Option<super::dsn::Dsn>,
}

/// Decodes `raw` and collects its tokens. Never fails: unparsable input yields its raw text.
pub fn decode(raw: &[u8]) -> Decoded {
    let mut text = String::new();
    let mut subject = String::new();
    let mut dsn = None;
    match mail_parser::MessageParser::default().parse(raw) {
        Some(message) => {
            subject = message.subject().unwrap_or_default().to_string();
            dsn = super::dsn::from_message(&message);
            // Raw header block first: catches tokens in custom headers (X-...) as sent.
            let header_end = find_header_end(raw);
            text.push_str(&String::from_utf8_lossy(&raw[..header_end]).replace("\r\n", "\n"));
            text.push('\n');
            text.push_str(&subject);
            text.push('\n');
            for i in 0..message.text_body_count() {
                if let Some(body) = message.body_text(i) {
                    text.push_str(&body);
                    text.push('\n');
                }
            }
            for i in 0..message.html_body_count() {
                if let Some(body) = message.body_html(i) {
                    text.push_str(&body);
                    text.push('\n');
                }
            }
            // Attachments that are text (a forwarded original, a .txt) are searched too.
            for part in message.attachments() {
                if let Some(t) = part.text_contents() {
                    text.push_str(t);
                    text.push('\n');
                }
            }
        }
        None => text.push_str(&String::from_utf8_lossy(raw)),
    }
    let tokens = find_tokens(&text);
    Decoded {
        subject,
        text,
        tokens,
        dsn,
    }
}

fn find_header_end(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len().min(64 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN_A: &str = "sw-feedback-form-1795430400-0a1b2c3d";

    #[test]
    fn finds_a_token_split_by_a_quoted_printable_soft_break_in_a_cyrillic_body() {
        let raw = String::from(
            "From: shop@example.ru\r\nTo: support@example.ru\r\nSubject: =?UTF-8?B?0J3QvtCy0L7QtSDRgdC+0L7QsdGJ0LXQvdC40LU=?=\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
             =D0=90=D0=B2=D1=82=D0=BE=D0=BC=D0=B0=D1=82=D0=B8=D1=87=D0=B5=D1=81=D0=BA=D0=B8=D0=B9 =D1=82=D0=B5=D1=81=D1=82 sw-feedback-=\r\nform-1795430400-0a1b2c3d\r\n",
        );
        assert!(!raw.contains(TOKEN_A), "the raw bytes must not contain it");
        let decoded = decode(raw.as_bytes());
        assert_eq!(decoded.tokens, vec![TOKEN_A.to_string()]);
        assert_eq!(decoded.subject, "Новое сообщение");
        assert!(decoded.text.contains("Автоматический тест"));
    }

    #[test]
    fn finds_a_token_in_a_base64_html_part_and_in_a_header() {
        // The IMAP code's encoder, not mail-parser's decoder that the test checks.
        use crate::mailbox::imap::wire::base64 as b64;
        let html = format!("<p>Заявка {TOKEN_A}</p>");
        let raw = format!(
            "Subject: x\r\nX-Request-Id: sw-other-1795430401-ffffffff\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
             --b\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--b--\r\n",
            b64(html.as_bytes())
        );
        let decoded = decode(raw.as_bytes());
        assert_eq!(
            decoded.tokens,
            vec![
                TOKEN_A.to_string(),
                "sw-other-1795430401-ffffffff".to_string()
            ]
        );
    }

    #[test]
    fn garbage_yields_no_token_and_no_panic() {
        assert!(decode(b"\xff\xfe\x00garbage").tokens.is_empty());
        assert!(decode(b"").tokens.is_empty());
    }
}
