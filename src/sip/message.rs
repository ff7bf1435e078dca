//! SIP messages: requests built from parts, responses parsed from bytes under hard caps.
//!
//! The parser reads what a client needs (status line, headers, Content-Length) and refuses the
//! rest loudly: a message bigger than [`MAX_MESSAGE`], more than [`MAX_HEADERS`] header lines,
//! bytes that are not UTF-8 in the head. It never panics and never allocates more than the
//! message it was given.

/// The largest message accepted, head and body together (a UDP datagram is at most 64 KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The most header lines a message may have.
pub const MAX_HEADERS: usize = 128;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `OPTIONS`, `REGISTER`, …
    pub method: &'static str,
    /// The Request-URI, as it goes on the wire.
    pub uri: String,
    /// Headers in order; Content-Length is added when the request is written.
    pub headers: Vec<(&'static str, String)>,
    /// The body (an SDP offer), with its Content-Type; none for most requests.
    pub body: Option<(&'static str, String)>,
}

impl Request {
    /// The request as bytes on the wire, with its body and Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        match &self.body {
            Some((content_type, body)) => {
                out.push_str(&format!(
                    "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ));
            }
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out.into_bytes()
    }

    /// Removes every header called `name`.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Replaces the first header called `name`, or appends it.
    pub fn set_header(&mut self, name: &'static str, value: String) {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.headers.push((name, value)),
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// The status code, 100–699.
    pub status: u16,
    /// The reason phrase, printable (control characters replaced), at most 100 characters.
    pub reason: String,
    /// Header lines in order, names as sent, folded lines joined.
    pub headers: Vec<(String, String)>,
    /// The body as text (an SDP answer), lossily decoded; empty when there is none.
    pub body: String,
}

impl Response {
    /// The first header called `name` (compact forms understood: `v`, `f`, `t`, `i`, `l`).
    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.headers_named(name).next()
    }

    /// Every header called `name`, in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let compact = compact_form(name);
        self.headers
            .iter()
            .filter(move |(n, _)| {
                n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c))
            })
            .map(|(_, v)| v.as_str())
    }

    /// `CSeq`'s number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let mut parts = self.header("CSeq")?.split_whitespace();
        let number = parts.next()?.parse().ok()?;
        Some((number, parts.next()?))
    }

    /// The `branch` parameter of the topmost Via.
    pub fn top_branch(&self) -> Option<&str> {
        let via = self.header("Via")?;
        // Several Vias may share one line, comma-separated; the first is the topmost.
        let first = via.split(',').next()?;
        first.split(';').skip(1).find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("branch")
                .then_some(value.trim())
        })
    }

    /// Whether this is a final response (200–699).
    pub fn is_final(&self) -> bool {
        self.status >= 200
    }
}

fn compact_form(name: &str) -> Option<&'static str> {
    [
        ("via", "v"),
        ("from", "f"),
        ("to", "t"),
        ("call-id", "i"),
        ("content-length", "l"),
        ("contact", "m"),
    ]
    .into_iter()
    .find(|(long, _)| long.eq_ignore_ascii_case(name))
    .map(|(_, short)| short)
}

/// The length of the first complete message in `buf` (a stream), `None` when more bytes are
/// needed, or why the stream cannot be read. Keep-alive CRLFs before a message are counted in.
pub fn frame(buf: &[u8]) -> Result<Option<usize>, String> {
    let skip = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let rest = &buf[skip..];
    let Some(head_end) = find(rest, b"\r\n\r\n") else {
        if rest.len() > MAX_MESSAGE {
            return Err(format!("a message head longer than {MAX_MESSAGE} bytes"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&rest[..head_end])
        .map_err(|_| "a message head that is not UTF-8".to_string())?;
    let length = content_length(head)?;
    let total = head_end + 4 + length;
    if total > MAX_MESSAGE {
        return Err(format!(
            "a message of {total} bytes (at most {MAX_MESSAGE})"
        ));
    }
    Ok((rest.len() >= total).then_some(skip + total))
}

fn content_length(head: &str) -> Result<usize, String> {
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            return value
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("Content-Length `{}` is not a number", printable(value, 20)));
        }
    }
    // Over UDP the datagram ends the message; over a stream a missing length means no body.
    Ok(0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What a message starts with: a response, or something else (a request from the server,
/// keep-alive noise), which a client ignores.
pub fn is_response(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    bytes[start..].starts_with(b"SIP/2.0 ")
}

/// Parses one complete response (a datagram, or a frame cut from a stream).
pub fn parse_response(bytes: &[u8]) -> Result<Response, String> {
    let Head {
        bytes,
        head_end,
        mut lines,
    } = split_head(bytes, "response")?;
    let status_line = lines.next().unwrap_or_default();
    let rest = status_line
        .strip_prefix("SIP/2.0 ")
        .ok_or_else(|| format!("not a SIP response: `{}`", printable(status_line, 40)))?;
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=699).contains(c))
        .ok_or_else(|| format!("status `{}` is not a SIP status code", printable(code, 10)))?;
    let headers = parse_headers(lines)?;
    let body = body_of(bytes, head_end, &headers);
    Ok(Response {
        status,
        reason: printable(reason, 100),
        headers,
        body,
    })
}

/// A message cut into its head's lines, after the size cap and leading keep-alive CRLFs.
struct Head<'a> {
    /// The message without the leading CRLFs.
    bytes: &'a [u8],
    /// Where the head ends (the blank line), in `bytes`.
    head_end: usize,
    /// The start line, then the header lines.
    lines: std::str::Split<'a, &'static str>,
}

/// Checks the size cap (the same for requests and responses), skips keep-alive CRLFs and
/// splits the head; `what` names the message in errors.
fn split_head<'a>(bytes: &'a [u8], what: &str) -> Result<Head<'a>, String> {
    if bytes.len() > MAX_MESSAGE {
        return Err(format!(
            "a message of {} bytes (at most {MAX_MESSAGE})",
            bytes.len()
        ));
    }
    let start = bytes
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let bytes = &bytes[start..];
    let head_end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| format!("a {what} head that is not UTF-8"))?;
    Ok(Head {
        bytes,
        head_end,
        lines: head.split("\r\n"),
    })
}

/// The body after the head ending at `head_end`, cut at Content-Length when there is one.
fn body_of(bytes: &[u8], head_end: usize, headers: &[(String, String)]) -> String {
    let rest = bytes.get(head_end + 4..).unwrap_or_default();
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("l"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(rest.len())
        .min(rest.len());
    String::from_utf8_lossy(&rest[..length]).into_owned()
}

/// Header lines after the start line: folded lines joined, at most [`MAX_HEADERS`].
fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<(String, String)>, String> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        if line.starts_with([' ', '\t']) {
            // A folded line continues the previous header.
            let (_, value) = headers
                .last_mut()
                .ok_or_else(|| "a continuation line before any header".to_string())?;
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        if headers.len() == MAX_HEADERS {
            return Err(format!("more than {MAX_HEADERS} header lines"));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a header line without `:`: `{}`", printable(line, 40)))?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("a bad header name `{}`", printable(name, 40)));
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(headers)
}

/// A request the server sent us (a BYE from the far end, a keep-alive OPTIONS), or one the
/// demo's PBX received.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingRequest {
    /// The method, as sent.
    pub method: String,
    /// The Request-URI, as sent.
    pub uri: String,
    /// Header lines in order.
    pub headers: Vec<(String, String)>,
    /// The body as text (an SDP offer), lossily decoded; empty when there is none.
    pub body: String,
}

impl IncomingRequest {
    /// Every header called `name` (compact forms understood), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let compact = compact_form(name);
        self.headers
            .iter()
            .filter(move |(n, _)| {
                n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c))
            })
            .map(|(_, v)| v.as_str())
    }

    /// A response with `status` and `reason` to this request: its Vias, From, To, Call-ID and
    /// CSeq echoed (RFC 3261 8.2.6).
    pub fn response(&self, status: u16, reason: &str) -> Vec<u8> {
        self.response_with(status, reason, None, &[], None)
    }

    /// A response like [`IncomingRequest::response`], with a tag added to To (when it has
    /// none), `extra` headers, and a body with its Content-Type.
    pub fn response_with(
        &self,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: &[(&str, String)],
        body: Option<(&str, &str)>,
    ) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for value in self.headers_named(name) {
                match to_tag {
                    Some(tag) if name == "To" && !value.contains(";tag=") => {
                        out.push_str(&format!("To: {value};tag={tag}\r\n"));
                    }
                    _ => out.push_str(&format!("{name}: {value}\r\n")),
                }
            }
        }
        for (name, value) in extra {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("User-Agent: {}\r\n", crate::USER_AGENT));
        match body {
            Some((content_type, body)) => out.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out.into_bytes()
    }
}

/// Parses one complete request (a datagram, or a frame cut from a stream).
pub fn parse_request(bytes: &[u8]) -> Result<IncomingRequest, String> {
    let Head {
        bytes,
        head_end,
        mut lines,
    } = split_head(bytes, "request")?;
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default();
    let uri = parts.next().unwrap_or_default();
    let version = parts.next();
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || version != Some("SIP/2.0")
    {
        return Err(format!(
            "not a SIP request: `{}`",
            printable(request_line, 40)
        ));
    }
    let headers = parse_headers(lines)?;
    let body = body_of(bytes, head_end, &headers);
    Ok(IncomingRequest {
        method: method.to_string(),
        uri: printable(uri, 200),
        headers,
        body,
    })
}

/// `text` safe for one line of output: control characters replaced, at most `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .trim()
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.trim().chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKabc;rport=5070,\
                      SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKother\r\nf: <sip:a@b>;tag=1\r\n\
                      CSeq: 7 OPTIONS\r\nServer: test\r\n folded\r\nl: 0\r\n\r\n";

    #[test]
    fn reads_a_response_with_compact_and_folded_headers() {
        let r = parse_response(OK.as_bytes()).unwrap();
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.top_branch(), Some("z9hG4bKabc"));
        assert_eq!(r.cseq(), Some((7, "OPTIONS")));
        assert_eq!(r.header("From"), Some("<sip:a@b>;tag=1"));
        assert_eq!(r.header("server"), Some("test folded"));
        assert_eq!(frame(OK.as_bytes()), Ok(Some(OK.len())));
    }

    #[test]
    fn frames_a_stream_message_by_message() {
        let two = format!("\r\n\r\nSIP/2.0 100 Trying\r\nContent-Length: 3\r\n\r\nabc{OK}");
        let first = frame(two.as_bytes()).unwrap().unwrap();
        assert_eq!(&two[first..], OK);
        assert_eq!(frame(&two.as_bytes()[..20]), Ok(None));
        assert_eq!(
            frame(b"SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Ok(None)
        );
    }

    #[test]
    fn hostile_input_is_refused_without_panicking() {
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\r\n\r\n".to_vec(),
            b"SIP/2.0".to_vec(),
            b"SIP/2.0 99999999999999999999 X\r\n\r\n".to_vec(),
            b"SIP/2.0 099 X\r\n\r\n".to_vec(),
            b"SIP/2.0 200 OK\r\n folded-first\r\n\r\n".to_vec(),
            b"SIP/2.0 200 OK\r\nno colon\r\n\r\n".to_vec(),
            b"SIP/2.0 200 OK\r\n: empty name\r\n\r\n".to_vec(),
            b"SIP/2.0 200 \xff\xfe\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
            format!(
                "SIP/2.0 200 OK\r\n{}\r\n",
                "X: y\r\n".repeat(MAX_HEADERS + 1)
            )
            .into_bytes(),
            vec![b'a'; MAX_MESSAGE + 1],
        ];
        for case in &cases {
            assert!(
                parse_response(case).is_err(),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
        // Every prefix of a valid message, and bytes flipped anywhere in it: no panic.
        for cut in 0..OK.len() {
            let _ = parse_response(&OK.as_bytes()[..cut]);
            let _ = frame(&OK.as_bytes()[..cut]);
            let mut flipped = OK.as_bytes().to_vec();
            flipped[cut] ^= 0x80;
            let _ = parse_response(&flipped);
            let _ = frame(&flipped);
        }
        assert!(frame(b"SIP/2.0 200 OK\r\nContent-Length: 99999999\r\n\r\n").is_err());
        assert!(frame(b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
        assert!(frame(&vec![b'a'; MAX_MESSAGE + 1]).is_err());
        // A reason phrase is cut and cleaned before anyone prints it.
        let long = format!("SIP/2.0 403 {}\x07\r\n\r\n", "x".repeat(500));
        let r = parse_response(long.as_bytes()).unwrap();
        assert!(r.reason.chars().count() <= 101 && !r.reason.contains('\x07'));
    }
}
