//! What an HTTP answer must look like: [`HttpExpect`] and its status rule [`StatusExpect`].
//!
//! Apart from the `http` probe because the `form` kind judges its answer (and its off-hours
//! acknowledgement) by the same expectations; this file is the config side (parsing, validation)
//! and the judgement of one [`Answer`].

use crate::net::Answer;
use crate::outcome::{FailureKind, Outcome};
use crate::value::{Dur, Pattern};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// Expectations on an HTTP answer. Without `status`, any 2xx passes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpExpect {
    /// `200`, `[200, 204]` or `"2xx"`.
    pub status: Option<StatusExpect>,
    /// Regex the body must match.
    pub body: Option<Pattern>,
    /// Regex the body must not match (e.g. an error page that answers 200).
    pub body_not: Option<Pattern>,
    /// JSON pointer (`/status`) → expected value.
    #[serde(default)]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Header name → regex its value must match.
    #[serde(default)]
    pub headers: BTreeMap<String, Pattern>,
    /// The whole exchange (request and body) must take no longer.
    pub max_latency: Option<Dur>,
}

/// Accepted status codes.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusExpect {
    /// Exactly these codes.
    Codes(Vec<u16>),
    /// A class: `2` for `2xx`.
    Class(u16),
}

impl StatusExpect {
    fn accepts(&self, code: u16) -> bool {
        match self {
            StatusExpect::Codes(codes) => codes.contains(&code),
            StatusExpect::Class(class) => code / 100 == *class,
        }
    }
}

impl fmt::Display for StatusExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusExpect::Codes(c) if c.len() == 1 => write!(f, "{}", c[0]),
            StatusExpect::Codes(c) => {
                let list: Vec<String> = c.iter().map(u16::to_string).collect();
                write!(f, "one of {}", list.join(", "))
            }
            StatusExpect::Class(c) => write!(f, "{c}xx"),
        }
    }
}

fn parse_status(s: &str) -> Result<StatusExpect, String> {
    let s = s.trim();
    if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
        return match class.parse::<u16>() {
            Ok(c @ 1..=5) => Ok(StatusExpect::Class(c)),
            _ => Err(format!("invalid status class `{s}`, expected 1xx to 5xx")),
        };
    }
    s.parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
        .map(|c| StatusExpect::Codes(vec![c]))
        .ok_or_else(|| {
            format!("invalid status `{s}`, expected a code like 200 or a class like 2xx")
        })
}

impl<'de> Deserialize<'de> for StatusExpect {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StatusExpect;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code (200), a list of codes, or a class (\"2xx\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusExpect, E> {
                parse_status(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusExpect, E> {
                parse_status(&v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusExpect, E> {
                parse_status(v).map_err(E::custom)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StatusExpect, A::Error> {
                let mut codes = Vec::new();
                while let Some(code) = seq.next_element::<u16>()? {
                    if !(100..=599).contains(&code) {
                        return Err(de::Error::custom(format!("invalid status {code}")));
                    }
                    codes.push(code);
                }
                if codes.is_empty() {
                    return Err(de::Error::custom("empty status list"));
                }
                Ok(StatusExpect::Codes(codes))
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl HttpExpect {
    /// Checks what serde cannot: JSON pointers are pointers.
    pub(crate) fn validate(&self) -> Result<(), String> {
        for pointer in self.json.keys() {
            if !pointer.is_empty() && !pointer.starts_with('/') {
                return Err(format!(
                    "expect.json key `{pointer}` is not a JSON pointer; write `/{pointer}`"
                ));
            }
        }
        Ok(())
    }

    /// Checks `answer` against these expectations; the first unmet one fails `outcome`.
    pub(crate) fn check(&self, outcome: &mut Outcome, answer: &Answer) {
        let status = answer.status;
        let status_ok = match &self.status {
            Some(s) => s.accepts(status),
            None => (200..300).contains(&status),
        };
        if !status_ok {
            let wanted = self
                .status
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "2xx".into());
            outcome.fail_with(
                FailureKind::Status,
                format!("status {status}, expected {wanted}"),
            );
        }
        for (name, pattern) in &self.headers {
            let values: Vec<&str> = answer
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if values.is_empty() {
                outcome.fail_with(
                    FailureKind::Expectation,
                    format!("header `{name}` is missing"),
                );
            } else if !values.iter().any(|v| pattern.is_match(v)) {
                outcome.fail_with(
                    FailureKind::Expectation,
                    format!("header `{name}` does not match /{}/", pattern.as_str()),
                );
            }
        }
        let truncated = answer.truncated;
        let text = String::from_utf8_lossy(&answer.body);
        if let Some(p) = &self.body
            && !p.is_match(&text)
        {
            let cut = if truncated {
                " (body cut at max_body)"
            } else {
                ""
            };
            outcome.fail_with(
                FailureKind::Expectation,
                format!("body does not match /{}/{cut}", p.as_str()),
            );
        }
        if let Some(p) = &self.body_not
            && p.is_match(&text)
        {
            outcome.fail_with(
                FailureKind::Expectation,
                format!("body matches /{}/, which it must not", p.as_str()),
            );
        }
        if !self.json.is_empty() {
            match serde_json::from_slice::<serde_json::Value>(&answer.body) {
                Err(e) => {
                    let why = if truncated {
                        "body was cut at max_body".to_string()
                    } else {
                        e.to_string()
                    };
                    outcome.fail_with(FailureKind::Expectation, format!("body is not JSON: {why}"));
                }
                Ok(doc) => {
                    for (pointer, wanted) in &self.json {
                        match doc.pointer(pointer) {
                            None => outcome.fail_with(
                                FailureKind::Expectation,
                                format!("JSON has no value at `{pointer}`"),
                            ),
                            Some(found) if !json_equal(found, wanted) => outcome.fail_with(
                                FailureKind::Expectation,
                                format!(
                                    "JSON `{pointer}` is {}, expected {}",
                                    short_json(found),
                                    short_json(wanted)
                                ),
                            ),
                            Some(_) => {}
                        }
                    }
                }
            }
        }
        if let Some(max) = self.max_latency
            && answer.elapsed > max.get()
        {
            outcome.fail_with(
                FailureKind::Expectation,
                format!(
                    "took {} ms, more than max_latency {max}",
                    answer.elapsed.as_millis()
                ),
            );
        }
    }
}

/// Numbers compare by value (`200` equals `200.0`); everything else structurally.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

fn short_json(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_expectations_parse() {
        assert!(parse_status("2xx").unwrap().accepts(204));
        assert!(!parse_status("2xx").unwrap().accepts(301));
        assert!(parse_status("404").unwrap().accepts(404));
        assert!(parse_status("6xx").is_err());
        assert!(parse_status("abc").is_err());
    }

    #[test]
    fn json_numbers_compare_by_value() {
        assert!(json_equal(
            &serde_json::json!(200),
            &serde_json::json!(200.0)
        ));
        assert!(!json_equal(
            &serde_json::json!("200"),
            &serde_json::json!(200)
        ));
    }
}
