//! Text a chat check sends and expects: [`ChatText`] (templates that also know `{{message}}` and
//! `{{session}}`), JSON request bodies made of them, and [`ReplyPattern`] (a reply regex that may
//! demand the run's `{{token}}`). All are parsed and checked when the config loads.

use crate::value::{Pattern, Template, TemplateVars, Text};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Text with the usual `{{token}}`, `{{check}}`, `{{now}}` and the chat's own `{{message}}` and
/// `{{session}}`, which only a chat conversation knows.
#[derive(Clone)]
pub struct ChatText(Vec<Piece>, String);

#[derive(Clone)]
enum Piece {
    Fixed(Template),
    Message,
    Session,
}

impl ChatText {
    /// No text at all.
    pub(super) fn empty() -> Self {
        ChatText(Vec::new(), String::new())
    }

    /// Parses the text; unknown placeholders are reported as the config error.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut chunk = String::new();
        let mut rest = source;
        let flush = |chunk: &mut String, pieces: &mut Vec<Piece>| -> Result<(), String> {
            if !chunk.is_empty() {
                pieces.push(Piece::Fixed(Template::parse(Text::interpolate(chunk)?)?));
                chunk.clear();
            }
            Ok(())
        };
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else { break };
            let piece = match after[..end].trim() {
                "message" => Some(Piece::Message),
                "session" => Some(Piece::Session),
                _ => None,
            };
            match piece {
                Some(piece) => {
                    chunk.push_str(&rest[..start]);
                    flush(&mut chunk, &mut pieces)?;
                    pieces.push(piece);
                }
                // Left for `Template`, which knows the other names and reports unknown ones.
                None => chunk.push_str(&rest[..start + 2 + end + 2]),
            }
            rest = &after[end + 2..];
        }
        chunk.push_str(rest);
        flush(&mut chunk, &mut pieces)?;
        Ok(ChatText(pieces, source.to_string()))
    }

    /// Renders for one message of one run.
    pub fn render(&self, vars: &TemplateVars<'_>, message: &str, session: &str) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Fixed(t) => out.push_str(&t.render(vars)),
                Piece::Message => out.push_str(message),
                Piece::Session => out.push_str(session),
            }
        }
        out
    }
}

impl fmt::Debug for ChatText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.1, f)
    }
}

impl<'de> Deserialize<'de> for ChatText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        ChatText::parse(&source).map_err(serde::de::Error::custom)
    }
}

/// A JSON request body whose strings are [`ChatText`]s.
#[derive(Debug, Clone)]
pub(super) enum ChatJson {
    Str(ChatText),
    Array(Vec<ChatJson>),
    Object(Vec<(String, ChatJson)>),
    Other(serde_json::Value),
}

pub(super) fn compile_json(v: &serde_json::Value) -> Result<ChatJson, String> {
    Ok(match v {
        serde_json::Value::String(s) => ChatJson::Str(ChatText::parse(s)?),
        serde_json::Value::Array(items) => {
            ChatJson::Array(items.iter().map(compile_json).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(map) => ChatJson::Object(
            map.iter()
                .map(|(k, v)| compile_json(v).map(|t| (k.clone(), t)))
                .collect::<Result<_, _>>()?,
        ),
        other => ChatJson::Other(other.clone()),
    })
}

impl ChatJson {
    pub(super) fn render(
        &self,
        vars: &TemplateVars<'_>,
        message: &str,
        session: &str,
    ) -> serde_json::Value {
        match self {
            ChatJson::Str(t) => serde_json::Value::String(t.render(vars, message, session)),
            ChatJson::Array(items) => serde_json::Value::Array(
                items
                    .iter()
                    .map(|i| i.render(vars, message, session))
                    .collect(),
            ),
            ChatJson::Object(fields) => serde_json::Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(vars, message, session)))
                    .collect(),
            ),
            ChatJson::Other(v) => v.clone(),
        }
    }
}

/// A reply regex that may say `{{token}}`: the run's token, matched literally, so a check can
/// demand that the bot's answer carries the message's token back (proof it read *this* message).
#[derive(Clone)]
pub struct ReplyPattern {
    source: String,
    /// Compiled at load when there is no `{{token}}`; else compiled per run.
    fixed: Option<Pattern>,
}

const TOKEN_PLACEHOLDER: &str = "{{token}}";

impl ReplyPattern {
    /// Parses and compiles (with a sample token), so a bad regex is a load-time error.
    pub fn parse(source: &str) -> Result<Self, String> {
        let sample = source.replace(TOKEN_PLACEHOLDER, "sw-check-0-sample");
        let pattern = Pattern::compile(&sample)?;
        Ok(ReplyPattern {
            source: source.to_string(),
            fixed: (!source.contains(TOKEN_PLACEHOLDER)).then_some(pattern),
        })
    }

    /// The regex for a run with `token` (escaped: it is matched literally).
    pub fn for_token(&self, token: &str) -> Result<Pattern, String> {
        match &self.fixed {
            Some(p) => Ok(p.clone()),
            None => Pattern::compile(
                &self
                    .source
                    .replace(TOKEN_PLACEHOLDER, &regex::escape(token)),
            ),
        }
    }

    /// The regex as written (with `{{token}}`, never the token).
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The compiled regex, when it does not depend on the run.
    pub fn fixed(&self) -> Option<&Pattern> {
        self.fixed.as_ref()
    }
}

impl fmt::Debug for ReplyPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.source)
    }
}

impl<'de> Deserialize<'de> for ReplyPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        ReplyPattern::parse(&source).map_err(serde::de::Error::custom)
    }
}
