//! Values compiled when the config loads: regular expressions and `{{token}}` templates.
//!
//! Compiling at load time means a typo in a regex is reported by `validate` with its location,
//! instead of making a check fail at 3 a.m.
//!
//! `{{phone.NAME.number}}` is the number of an account under `phones:`, which may be declared in
//! another file than the template. The loader therefore reads every file's `phones:` first and
//! makes their numbers visible to template parsing ([`with_phone_numbers`]); the placeholder is
//! replaced by the number right there, so an unknown name is reported where the template is,
//! with the check's name and position, like any other typo.

use super::interp::Text;
use serde::{Deserialize, Deserializer};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

thread_local! {
    /// The `phones:` accounts of the config being loaded: name → its `number`, if it has one.
    /// Set by the loader around parsing (deserialization is synchronous, on one thread).
    static PHONE_NUMBERS: RefCell<Option<BTreeMap<String, Option<String>>>> =
        const { RefCell::new(None) };
}

/// Runs `f` with `numbers` (account name → its number) known to `{{phone.NAME.number}}`.
pub fn with_phone_numbers<T>(
    numbers: BTreeMap<String, Option<String>>,
    f: impl FnOnce() -> T,
) -> T {
    let previous = PHONE_NUMBERS.with(|p| p.replace(Some(numbers)));
    let result = f();
    PHONE_NUMBERS.with(|p| *p.borrow_mut() = previous);
    result
}

/// The number of account `name` for `{{phone.NAME.number}}`, or why there is none.
fn phone_number(name: &str) -> Result<String, String> {
    PHONE_NUMBERS.with(|p| {
        let known = p.borrow();
        let empty = BTreeMap::new();
        let known = known.as_ref().unwrap_or(&empty);
        match known.get(name) {
            Some(Some(number)) => Ok(number.clone()),
            Some(None) => Err(format!(
                "`{{{{phone.{name}.number}}}}`: phone `{name}` has no `number`; set it under `phones:`"
            )),
            None => {
                let names: Vec<&String> = known.keys().collect();
                let declared = if names.is_empty() {
                    "none".to_string()
                } else {
                    names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                };
                let hint = super::closest(name, &names)
                    .map(|best| format!(" (did you mean `{best}`?)"))
                    .unwrap_or_default();
                Err(format!(
                    "`{{{{phone.{name}.number}}}}` names no account under `phones:` (declared: {declared}){hint}"
                ))
            }
        }
    })
}

/// A compiled regular expression (Rust `regex` syntax; `(?i)` for case-insensitive).
#[derive(Clone)]
pub struct Pattern(pub regex::Regex);

impl Pattern {
    /// Compiles `source`; the error names the pattern and the cause, without regex's multi-line
    /// caret diagram.
    pub fn compile(source: &str) -> Result<Self, String> {
        regex::RegexBuilder::new(source)
            // Bounded so a pathological pattern cannot eat the daemon's memory at load.
            .size_limit(1 << 20)
            .build()
            .map(Pattern)
            .map_err(|e| {
                let text = e.to_string();
                let cause = text
                    .lines()
                    .rev()
                    .find_map(|l| l.trim().strip_prefix("error: "))
                    .unwrap_or(text.trim());
                format!("invalid regex `{source}`: {cause}")
            })
    }

    /// Whether the pattern matches somewhere in `haystack`.
    pub fn is_match(&self, haystack: &str) -> bool {
        self.0.is_match(haystack)
    }
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}/", self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let source = String::deserialize(deserializer)?;
        Pattern::compile(&source).map_err(serde::de::Error::custom)
    }
}

/// Variables a template may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// The run's correlation token, `sw-<check>-<unix>-<random>`.
    Token,
    /// The check's name.
    Check,
    /// The run's start time, RFC 3339 UTC.
    Now,
}

const VAR_NAMES: &[(&str, Var)] = &[
    ("token", Var::Token),
    ("check", Var::Check),
    ("now", Var::Now),
];

#[derive(Clone, Debug)]
enum Part {
    Literal(String),
    Var(Var),
}

/// Values for a template's variables during one run.
#[derive(Clone, Debug)]
pub struct TemplateVars<'a> {
    /// The run's correlation token.
    pub token: &'a str,
    /// The check's name.
    pub check: &'a str,
    /// The run's start time, RFC 3339.
    pub now: &'a str,
}

/// A string with `{{token}}`, `{{check}}`, `{{now}}` and `{{phone.NAME.number}}` placeholders,
/// checked at load.
#[derive(Clone)]
pub struct Template {
    source: Text,
    parts: Vec<Part>,
}

impl Template {
    /// Parses (after `${…}` interpolation) and checks every placeholder.
    pub fn parse(source: Text) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = source.expose();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed `{{{{` in template `{}`", source.template()))?;
            let name = after[..end].trim();
            if let Some(account) = name
                .strip_prefix("phone.")
                .and_then(|n| n.strip_suffix(".number"))
            {
                parts.push(Part::Literal(phone_number(account.trim())?));
                rest = &after[end + 2..];
                continue;
            }
            let var = VAR_NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    format!(
                        "unknown template variable `{{{{{name}}}}}`, expected one of {}",
                        VAR_NAMES
                            .iter()
                            .map(|(n, _)| format!("`{{{{{n}}}}}`"))
                            .chain(["`{{phone.NAME.number}}`".to_string()])
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            parts.push(Part::Var(var));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { source, parts })
    }

    /// Renders the template for one run.
    pub fn render(&self, vars: &TemplateVars<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Var(Var::Token) => out.push_str(vars.token),
                Part::Var(Var::Check) => out.push_str(vars.check),
                Part::Var(Var::Now) => out.push_str(vars.now),
            }
        }
        out
    }

    /// Whether the template mentions `{{token}}`.
    pub fn uses_token(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Var(Var::Token)))
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Text::deserialize(deserializer)?;
        Template::parse(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_known_variables() {
        let t =
            Template::parse(Text::literal("Automated test {{token}} from {{ check }}")).unwrap();
        let vars = TemplateVars {
            token: "sw-a-1-x",
            check: "a",
            now: "2026-01-01T00:00:00Z",
        };
        assert_eq!(t.render(&vars), "Automated test sw-a-1-x from a");
        assert!(t.uses_token());
    }

    #[test]
    fn rejects_unknown_and_unclosed_placeholders() {
        let err = Template::parse(Text::literal("{{tokn}}")).unwrap_err();
        assert!(
            err.contains("unknown template variable `{{tokn}}`"),
            "{err}"
        );
        assert!(Template::parse(Text::literal("{{token")).is_err());
    }

    #[test]
    fn fills_a_phone_number_known_at_load() {
        let numbers = BTreeMap::from([
            ("line".to_string(), Some("+7 900 555-01-00".to_string())),
            ("bare".to_string(), None),
        ]);
        with_phone_numbers(numbers, || {
            let t = Template::parse(Text::literal("call {{ phone.line.number }}")).unwrap();
            let vars = TemplateVars {
                token: "t",
                check: "c",
                now: "n",
            };
            assert_eq!(t.render(&vars), "call +7 900 555-01-00");
            let err = Template::parse(Text::literal("{{phone.lin.number}}")).unwrap_err();
            assert!(
                err.contains("(declared: bare, line) (did you mean `line`?)"),
                "{err}"
            );
            let err = Template::parse(Text::literal("{{phone.bare.number}}")).unwrap_err();
            assert!(err.contains("has no `number`"), "{err}");
        });
        // Outside a load, no account is known.
        assert!(Template::parse(Text::literal("{{phone.line.number}}")).is_err());
    }
}
