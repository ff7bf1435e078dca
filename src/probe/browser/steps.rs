//! The step language of `browser` checks and of `form` checks with `via: browser`.
//!
//! A step is a one-key YAML map: the key is the action, the value its argument. Actions that need
//! one argument take it as a scalar (`click: "#send"`); the map form names the arguments and may
//! add a `timeout:` (`wait_for: { selector: "#phone", state: visible, timeout: 15s }`).
//!
//! Steps are parsed by hand from a generic value rather than with a derived enum: serde's messages
//! for a mistyped externally tagged enum ("data did not match any variant") do not say which step
//! or what was expected, and a config error must say both. Everything that can be checked without
//! a browser is checked here, at load: CSS syntax, regexes, templates, the `open` URLs (after
//! `${ENV}`), durations.

use crate::value::{Dur, Pattern, Template, TemplateVars, Text, closest, parse_duration};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Every action, in the order the README lists them.
pub const ACTIONS: &[&str] = &[
    "open",
    "click",
    "fill",
    "select",
    "check",
    "scroll_to",
    "wait_for",
    "frame",
    "expect_text",
    "sleep",
];

/// The longest `sleep`: a longer wait is a `wait_for` for something on the page.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);

/// The steps of a check, in order.
#[derive(Debug, Clone, Default)]
pub struct Steps(pub Vec<Step>);

/// One step: what to do, and its own timeout (else the check's `step_timeout`).
#[derive(Debug, Clone)]
pub struct Step {
    /// What to do.
    pub action: Action,
    /// This step's timeout, overriding `step_timeout`.
    pub timeout: Option<Dur>,
}

/// What a step does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Load a URL (templated).
    Open(Template),
    /// Click an element once it is present and displayed.
    Click(Css),
    /// Clear a field and type the (templated) text.
    Fill {
        /// The field.
        selector: Css,
        /// What to type.
        text: Template,
    },
    /// Pick the `<option>` with this value in a `<select>`.
    Select {
        /// The `<select>`.
        selector: Css,
        /// The option's `value`.
        value: String,
    },
    /// Tick a checkbox (nothing to do when it is ticked already).
    Check(Css),
    /// Scroll an element into the middle of the window.
    ScrollTo(Css),
    /// Wait until an element is present, visible or gone.
    WaitFor {
        /// The element.
        selector: Css,
        /// The state waited for.
        state: ElementState,
    },
    /// Enter an iframe, or go back to the parent frame.
    Frame(FrameTarget),
    /// Wait until an element's text matches.
    ExpectText {
        /// The element.
        selector: Css,
        /// What its text must match.
        pattern: Pattern,
    },
    /// Pause.
    Sleep(Dur),
}

/// A CSS selector whose syntax was checked at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Css(String);

impl Css {
    /// Checks the syntax (with the same parser the `form` kind uses).
    pub fn parse(text: &str) -> Result<Css, String> {
        scraper::Selector::parse(text)
            .map(|_| Css(text.to_string()))
            .map_err(|e| {
                format!(
                    "invalid CSS selector `{text}`: {}",
                    crate::probe::form::why(&e)
                )
            })
    }
    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Css {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// What `wait_for` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementState {
    /// In the DOM (the default).
    Present,
    /// In the DOM and displayed.
    Visible,
    /// Not in the DOM, or not displayed.
    Gone,
}

impl ElementState {
    fn as_str(self) -> &'static str {
        match self {
            ElementState::Present => "present",
            ElementState::Visible => "visible",
            ElementState::Gone => "gone",
        }
    }
}

/// Where `frame` goes.
#[derive(Debug, Clone)]
pub enum FrameTarget {
    /// Into the iframe matching the selector.
    Element(Css),
    /// Back to the parent frame.
    Parent,
}

impl Action {
    /// The action's name as written in the config (also the phase's suffix).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Open(_) => "open",
            Action::Click(_) => "click",
            Action::Fill { .. } => "fill",
            Action::Select { .. } => "select",
            Action::Check(_) => "check",
            Action::ScrollTo(_) => "scroll_to",
            Action::WaitFor { .. } => "wait_for",
            Action::Frame(_) => "frame",
            Action::ExpectText { .. } => "expect_text",
            Action::Sleep(_) => "sleep",
        }
    }

    /// Whether the step carries the run's token to the page.
    pub fn uses_token(&self) -> bool {
        match self {
            Action::Open(url) => url.uses_token(),
            Action::Fill { text, .. } => text.uses_token(),
            _ => false,
        }
    }
}

/// How failure messages name a step: its action and selector (`wait_for "#phone" visible`).
/// Typed text and option values are left out: they may be personal data.
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name();
        match self {
            Action::Open(url) => write!(f, "{name} {url}"),
            Action::Click(s) | Action::Check(s) | Action::ScrollTo(s) => write!(f, "{name} {s}"),
            Action::Fill { selector, .. }
            | Action::Select { selector, .. }
            | Action::ExpectText { selector, .. } => write!(f, "{name} {selector}"),
            Action::WaitFor { selector, state } => match state {
                ElementState::Present => write!(f, "{name} {selector}"),
                _ => write!(f, "{name} {selector} {}", state.as_str()),
            },
            Action::Frame(FrameTarget::Element(s)) => write!(f, "{name} {s}"),
            Action::Frame(FrameTarget::Parent) => write!(f, "{name} parent"),
            Action::Sleep(d) => write!(f, "{name} {d}"),
        }
    }
}

/// The values `open` URLs are checked with at load; the real ones differ per run.
const SAMPLE_VARS: TemplateVars<'static> = TemplateVars {
    token: "sw-check-0-00000000",
    check: "check",
    now: "2000-01-01T00:00:00Z",
};

impl<'de> Deserialize<'de> for Steps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        parse(value).map(Steps).map_err(serde::de::Error::custom)
    }
}

/// Parses a `steps:` list; every bad step is reported, each with its number.
pub fn parse(value: Value) -> Result<Vec<Step>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "steps must be a list, e.g. `steps: [ {{ open: \"https://shop.example/\" }} ]`, found {}",
            kind_of(&value)
        ));
    };
    let mut steps = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match parse_step(item) {
            Ok(step) => steps.push(step),
            Err((None, e)) => errors.push(format!("step {}: {e}", i + 1)),
            Err((Some(action), e)) => errors.push(format!("step {} ({action}): {e}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(steps)
    } else {
        Err(errors.join("; "))
    }
}

type StepError = (Option<String>, String);

fn parse_step(value: Value) -> Result<Step, StepError> {
    let Value::Object(map) = value else {
        return Err((
            None,
            format!(
                "expected a one-key map such as `click: \"#send\"`, found {}",
                kind_of(&value)
            ),
        ));
    };
    if map.len() != 1 {
        let keys: Vec<String> = map.keys().map(|k| format!("`{k}`")).collect();
        return Err((
            None,
            format!(
                "a step has exactly one action, found {} keys ({}); start each step with its own `-`",
                map.len(),
                keys.join(", ")
            ),
        ));
    }
    let Some((action, arg)) = map.into_iter().next() else {
        return Err((None, "empty step".into()));
    };
    let Some(&name) = ACTIONS.iter().find(|a| **a == action) else {
        let hint = closest(&action, ACTIONS)
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        return Err((
            None,
            format!(
                "unknown action `{action}`{hint}; a step is one of {}",
                quoted(ACTIONS)
            ),
        ));
    };
    let fail = |e: String| (Some(name.to_string()), e);
    let (shorthand, keys): (Option<&str>, &[&str]) = match name {
        "open" => (Some("url"), &["url", "timeout"]),
        "click" | "check" | "scroll_to" | "frame" => (Some("selector"), &["selector", "timeout"]),
        "wait_for" => (Some("selector"), &["selector", "state", "timeout"]),
        "fill" => (None, &["selector", "text", "timeout"]),
        "select" => (None, &["selector", "value", "timeout"]),
        "expect_text" => (None, &["selector", "pattern", "timeout"]),
        _ => (Some("duration"), &["duration"]),
    };
    let mut args = Args::new(name, arg, shorthand, keys).map_err(fail)?;
    let action = match name {
        "open" => Action::Open(args.url().map_err(fail)?),
        "click" => Action::Click(args.css().map_err(fail)?),
        "check" => Action::Check(args.css().map_err(fail)?),
        "scroll_to" => Action::ScrollTo(args.css().map_err(fail)?),
        "frame" => {
            let target = args.string("selector").map_err(fail)?;
            Action::Frame(if target == "parent" {
                FrameTarget::Parent
            } else {
                FrameTarget::Element(Css::parse(&target).map_err(fail)?)
            })
        }
        "wait_for" => Action::WaitFor {
            selector: args.css().map_err(fail)?,
            state: args.state().map_err(fail)?,
        },
        "fill" => Action::Fill {
            selector: args.css().map_err(fail)?,
            text: args.template("text").map_err(fail)?,
        },
        "select" => Action::Select {
            selector: args.css().map_err(fail)?,
            value: args.string("value").map_err(fail)?,
        },
        "expect_text" => Action::ExpectText {
            selector: args.css().map_err(fail)?,
            pattern: args.pattern().map_err(fail)?,
        },
        _ => {
            let d = args.duration("duration").map_err(fail)?;
            if d.get() > MAX_SLEEP {
                return Err(fail(format!(
                    "{d} is longer than the 60s a sleep may last; wait for something on the page with `wait_for` instead"
                )));
            }
            Action::Sleep(d)
        }
    };
    let timeout = args.timeout().map_err(fail)?;
    Ok(Step { action, timeout })
}

/// A step's arguments as a map, the scalar shorthand turned into its one key.
struct Args {
    map: Map<String, Value>,
    example: &'static str,
}

impl Args {
    fn new(
        action: &'static str,
        arg: Value,
        shorthand: Option<&str>,
        keys: &[&str],
    ) -> Result<Args, String> {
        let example = example(action);
        let map = match (arg, shorthand) {
            (Value::Object(map), _) => map,
            (scalar @ (Value::String(_) | Value::Number(_) | Value::Bool(_)), Some(key)) => {
                Map::from_iter([(key.to_string(), scalar)])
            }
            (other, _) => {
                return Err(format!(
                    "expected {}, found {}; e.g. `{example}`",
                    if shorthand.is_some() {
                        "a value or a map"
                    } else {
                        "a map"
                    },
                    kind_of(&other)
                ));
            }
        };
        for key in map.keys() {
            if !keys.contains(&key.as_str()) {
                let hint = closest(key, keys)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "no field `{key}`{hint}; {action} takes {}",
                    quoted(keys)
                ));
            }
        }
        Ok(Args { map, example })
    }

    /// A required string (numbers and booleans as written: `value: 1`, `text: 79000000000`).
    fn string(&mut self, key: &str) -> Result<String, String> {
        match self.map.remove(key) {
            Some(Value::String(s)) => Ok(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(v.to_string()),
            Some(other) => Err(format!(
                "`{key}` must be text, found {}; e.g. `{}`",
                kind_of(&other),
                self.example
            )),
            None => Err(format!("missing `{key}`; e.g. `{}`", self.example)),
        }
    }

    fn css(&mut self) -> Result<Css, String> {
        Css::parse(&self.string("selector")?)
    }

    fn template(&mut self, key: &str) -> Result<Template, String> {
        let text = Text::interpolate(&self.string(key)?)?;
        Template::parse(text)
    }

    fn url(&mut self) -> Result<Template, String> {
        let url = self.template("url")?;
        let rendered = url.render(&SAMPLE_VARS);
        match url::Url::parse(&rendered) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(url),
            Ok(_) => Err(format!(
                "url `{url}` must be http:// or https:// with a host"
            )),
            Err(e) => Err(format!("invalid url `{url}`: {e}")),
        }
    }

    fn pattern(&mut self) -> Result<Pattern, String> {
        let source = self.string("pattern")?;
        serde_json::from_value::<Pattern>(Value::String(source)).map_err(|e| e.to_string())
    }

    fn duration(&mut self, key: &str) -> Result<Dur, String> {
        let d = Dur(parse_duration(&self.string(key)?)?);
        if d.get().is_zero() {
            return Err(format!("`{key}` must be longer than 0s"));
        }
        Ok(d)
    }

    fn timeout(&mut self) -> Result<Option<Dur>, String> {
        if self.map.contains_key("timeout") {
            self.duration("timeout").map(Some)
        } else {
            Ok(None)
        }
    }

    fn state(&mut self) -> Result<ElementState, String> {
        if !self.map.contains_key("state") {
            return Ok(ElementState::Present);
        }
        let state = self.string("state")?;
        [
            ElementState::Present,
            ElementState::Visible,
            ElementState::Gone,
        ]
        .into_iter()
        .find(|s| s.as_str() == state)
        .ok_or_else(|| {
            format!("state `{state}` is not one of `present` (the default), `visible`, `gone`")
        })
    }
}

/// A correct step of each action, for messages.
fn example(action: &str) -> &'static str {
    match action {
        "open" => "open: \"https://shop.example/\"",
        "click" => "click: \"#send\"",
        "check" => "check: \"#agree\"",
        "scroll_to" => "scroll_to: \"#send\"",
        "frame" => "frame: \"iframe#widget\"",
        "wait_for" => "wait_for: { selector: \"#phone\", state: visible }",
        "fill" => {
            "fill: { selector: \"#message\", text: \"Automated test {{token}}, please ignore\" }"
        }
        "select" => "select: { selector: \"#topic\", value: \"order\" }",
        "expect_text" => "expect_text: { selector: \".result\", pattern: \"(?i)thank you\" }",
        _ => "sleep: 500ms",
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(yaml: &str) -> Result<Vec<Step>, String> {
        let value: Value = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        parse(value)
    }

    #[test]
    fn reads_shorthand_and_map_forms() {
        let parsed = steps(
            r##"
- open: "https://shop.example/?t={{token}}"
- click: "#callback-button"
- frame: "iframe#widget"
- wait_for: { selector: "#phone", state: visible, timeout: 15s }
- fill: { selector: "#phone", text: 79000000000 }
- select: { selector: "#topic", value: order }
- check: "#agree"
- scroll_to: "#send"
- frame: parent
- expect_text: { selector: ".result", pattern: "(?i)спасибо" }
- sleep: 500ms
"##,
        )
        .expect("valid steps");
        let shown: Vec<String> = parsed.iter().map(|s| s.action.to_string()).collect();
        assert_eq!(
            shown,
            [
                "open https://shop.example/?t={{token}}",
                "click \"#callback-button\"",
                "frame \"iframe#widget\"",
                "wait_for \"#phone\" visible",
                "fill \"#phone\"",
                "select \"#topic\"",
                "check \"#agree\"",
                "scroll_to \"#send\"",
                "frame parent",
                "expect_text \".result\"",
                "sleep 500ms",
            ]
        );
        assert_eq!(parsed[3].timeout, Some(Dur::secs(15)));
        assert!(parsed[0].action.uses_token());
        let Action::Fill { text, .. } = &parsed[4].action else {
            panic!("fill")
        };
        assert_eq!(text.render(&SAMPLE_VARS), "79000000000");
    }

    #[test]
    fn every_bad_step_is_named_with_what_is_allowed() {
        let err = steps(
            r##"
- open: "ftp://shop.example/"
- clik: "#send"
- fill: { selecter: "#a", text: x }
- wait_for: { selector: "#a", state: shown }
- click: "#a["
- sleep: 2m
- { click: "#a", fill: "#b" }
- expect_text: { selector: "p", pattern: "(" }
- fill: "#a"
"##,
        )
        .unwrap_err();
        let lines: Vec<&str> = err.split("; step ").collect();
        assert_eq!(
            lines,
            [
                "step 1 (open): url `ftp://shop.example/` must be http:// or https:// with a host",
                "2: unknown action `clik` (did you mean `click`?); a step is one of `open`, `click`, `fill`, `select`, `check`, `scroll_to`, `wait_for`, `frame`, `expect_text`, `sleep`",
                "3 (fill): no field `selecter` (did you mean `selector`?); fill takes `selector`, `text`, `timeout`",
                "4 (wait_for): state `shown` is not one of `present` (the default), `visible`, `gone`",
                "5 (click): invalid CSS selector `#a[`: Unexpected EOL",
                "6 (sleep): 2m is longer than the 60s a sleep may last; wait for something on the page with `wait_for` instead",
                "7: a step has exactly one action, found 2 keys (`click`, `fill`); start each step with its own `-`",
                "8 (expect_text): invalid regex `(`: unclosed group",
                "9 (fill): expected a map, found text; e.g. `fill: { selector: \"#message\", text: \"Automated test {{token}}, please ignore\" }`",
            ]
        );
    }

    #[test]
    fn suggests_nothing_for_far_away_names() {
        assert_eq!(closest("zzzzzz", ACTIONS), None);
        assert_eq!(closest("expect", ACTIONS), None);
        assert_eq!(closest("scrollto", ACTIONS), Some("scroll_to"));
    }
}
