//! Reading a form out of a page: which form, where it goes, and what a browser would send.
//!
//! The result is plain data ([`PageForm`]) with nothing borrowed from the parsed document, so the
//! parse can run on the blocking pool and its tree (which is not `Send`) never crosses an await.
//! What counts as a form's data follows the HTML standard's "constructing the entry list" as far
//! as a page without JavaScript needs it: controls inside the form or naming it with `form="id"`,
//! minus disabled ones; checked boxes and radios; selected options; the submit button used.

use super::error::FormError;
use crate::value::Text;
use scraper::{ElementRef, Html, Selector};

/// What the page's form would submit before anything is filled in.
#[derive(Debug)]
pub(super) struct PageForm {
    /// The selector that picked the form, as written, for messages.
    pub selector: String,
    /// How many forms the selector matched; the first is used.
    pub matched: usize,
    /// `GET` or `POST`, after the submit button's `formmethod`.
    pub method: reqwest::Method,
    /// The `action` (or the button's `formaction`) as written; `None` when empty: the page itself.
    pub action: Option<String>,
    /// `multipart/form-data` rather than URL-encoded.
    pub multipart: bool,
    /// The page's `<base href>`, which relative actions resolve against.
    pub base: Option<String>,
    /// `<meta name="csrf-token" content="…">`, sent back as `X-CSRF-Token` (Rails, Laravel).
    pub csrf_meta: Option<String>,
    /// Every control of the form, in tree order.
    pub controls: Vec<Control>,
    /// The submit button used (an index into `controls`), if the form has one.
    pub submitter: Option<usize>,
}

/// One control of the form.
#[derive(Debug)]
pub(super) struct Control {
    /// The `name` attribute; empty only for buttons.
    pub name: String,
    /// What sort of control it is.
    pub kind: ControlKind,
    /// What it submits; `None` when nothing (an unchecked box, a select with no option).
    pub value: Option<String>,
    /// Carries the `required` attribute.
    pub required: bool,
    /// Set from the check's `fields` or `files` rather than the page.
    pub filled: bool,
}

/// Sorts of controls, as far as submitting them differs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ControlKind {
    /// `<input type=hidden>`: nonces and CSRF tokens.
    Hidden,
    /// Text-like inputs and `<textarea>`.
    Text,
    /// Checkboxes and radio buttons.
    Toggle,
    /// `<select>`.
    Select,
    /// `<input type=file>` and the file attached to it from the check's `files`.
    File(Option<Upload>),
    /// A submit button; `image` buttons submit click coordinates instead of a value.
    Submit {
        /// `<input type=image>`.
        image: bool,
    },
}

/// A file attached to a file input.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Upload {
    /// File name as sent.
    pub file_name: String,
    /// Content, rendered from its template.
    pub content: String,
    /// MIME type, checked at load.
    pub content_type: String,
}

/// The selectors that pick the form and, optionally, its submit button.
pub(super) struct Selectors {
    /// Picks the form.
    pub form: Selector,
    /// The form selector as written, for messages.
    pub form_text: String,
    /// Picks the submit button within the form.
    pub submit: Option<(Selector, String)>,
}

/// Finds the form in `html`. `page` names the page in messages (a template, never a secret).
pub(super) fn read(html: &str, page: &str, selectors: &Selectors) -> Result<PageForm, FormError> {
    let doc = Html::parse_document(html);
    let is_form = |e: &ElementRef| e.value().name() == "form";
    let matches: Vec<ElementRef> = doc.select(&selectors.form).filter(is_form).collect();
    let Some(form) = matches.first().copied() else {
        let forms = doc
            .root_element()
            .descendent_elements()
            .filter(is_form)
            .map(describe_form)
            .collect();
        let not_a_form = doc
            .select(&selectors.form)
            .next()
            .map(|e| e.value().name().to_string());
        return Err(FormError::NoForm {
            selector: selectors.form_text.clone(),
            page: page.to_string(),
            forms,
            not_a_form,
        });
    };

    let mut controls = Vec::new();
    let mut submitter = None;
    for el in doc.root_element().descendent_elements() {
        if !matches!(
            el.value().name(),
            "input" | "select" | "textarea" | "button"
        ) || !belongs_to(el, form)
            || disabled(el)
        {
            continue;
        }
        let before = controls.len();
        push_controls(el, &mut controls);
        let is_button = controls[before..]
            .iter()
            .any(|c| matches!(c.kind, ControlKind::Submit { .. }));
        if is_button && submitter.is_none() {
            let picked = match &selectors.submit {
                Some((selector, _)) => selector.matches(&el),
                // Without `submit:`, the form's first submit button, as when Enter is pressed.
                None => true,
            };
            if picked {
                submitter = Some((before, el));
            }
        }
    }
    if let (Some((_, text)), None) = (&selectors.submit, submitter) {
        let buttons = controls
            .iter()
            .filter(|c| matches!(c.kind, ControlKind::Submit { .. }))
            .map(|c| match (c.name.as_str(), c.value.as_deref()) {
                ("", Some(v)) if !v.is_empty() => format!("\"{v}\""),
                ("", _) => "(unnamed)".to_string(),
                (name, _) => format!("name={name}"),
            })
            .collect();
        return Err(FormError::NoSubmit {
            form: selectors.form_text.clone(),
            selector: text.clone(),
            buttons,
        });
    }

    // The submit button may override where and how the form is sent.
    let button = submitter.map(|(_, el)| el);
    let attr = |button_attr: &str, form_attr: &str| {
        button
            .and_then(|b| b.value().attr(button_attr))
            .or_else(|| form.value().attr(form_attr))
            .map(str::trim)
    };
    let method = match attr("formmethod", "method") {
        Some(m) if m.eq_ignore_ascii_case("post") => reqwest::Method::POST,
        // `get`, `dialog` and invalid values submit as GET, as in a browser.
        _ => reqwest::Method::GET,
    };
    let action = attr("formaction", "action")
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    let multipart = attr("formenctype", "enctype")
        .is_some_and(|e| e.eq_ignore_ascii_case("multipart/form-data"));
    let base = doc
        .root_element()
        .descendent_elements()
        .find(|e| e.value().name() == "base" && e.value().attr("href").is_some())
        .and_then(|e| e.value().attr("href"))
        .map(|h| h.trim().to_string());
    let csrf_meta = doc
        .root_element()
        .descendent_elements()
        .find(|e| {
            e.value().name() == "meta"
                && e.value()
                    .attr("name")
                    .is_some_and(|n| n.eq_ignore_ascii_case("csrf-token"))
        })
        .and_then(|e| e.value().attr("content"))
        .map(str::to_string);
    Ok(PageForm {
        selector: selectors.form_text.clone(),
        matched: matches.len(),
        method,
        action,
        multipart,
        base,
        csrf_meta,
        controls,
        submitter: submitter.map(|(index, _)| index),
    })
}

impl PageForm {
    /// Where the form goes: `action` (the check's `action:`) if given, else the form's action
    /// resolved against the page's `<base href>` and URL, else the page itself.
    pub fn target(&self, page: &url::Url, action: Option<&Text>) -> Result<url::Url, FormError> {
        let base = self
            .base
            .as_deref()
            .and_then(|b| page.join(b).ok())
            .unwrap_or_else(|| page.clone());
        let (resolved, written) = match (action, &self.action) {
            (Some(action), _) => (page.join(action.expose()), action.to_string()),
            (None, Some(action)) => (base.join(action), action.clone()),
            (None, None) => (Ok(page.clone()), crate::value::shown_url(page)),
        };
        match resolved {
            Ok(mut url) if matches!(url.scheme(), "http" | "https") => {
                url.set_fragment(None);
                Ok(url)
            }
            _ => Err(FormError::BadAction {
                form: self.selector.clone(),
                action: written,
            }),
        }
    }
}

/// Whether `el` is one of `form`'s controls: inside it, unless it names another form with
/// `form="id"`, or outside it and naming it.
fn belongs_to(el: ElementRef, form: ElementRef) -> bool {
    match el.value().attr("form") {
        Some(id) => form.value().id() == Some(id),
        None => el.ancestors().any(|a| a.id() == form.id()),
    }
}

/// Disabled controls, and those in a disabled fieldset, are never submitted.
fn disabled(el: ElementRef) -> bool {
    el.value().attr("disabled").is_some()
        || el
            .ancestors()
            .filter_map(ElementRef::wrap)
            .any(|a| a.value().name() == "fieldset" && a.value().attr("disabled").is_some())
}

/// Adds the controls `el` contributes: none, one, or one per selected option of a
/// `<select multiple>`.
fn push_controls(el: ElementRef, controls: &mut Vec<Control>) {
    let v = el.value();
    let name = v.attr("name").unwrap_or_default().to_string();
    let required = v.attr("required").is_some();
    let control = |kind, value| Control {
        name: name.clone(),
        kind,
        value,
        required,
        filled: false,
    };
    let value_or = |default: &str| Some(v.attr("value").unwrap_or(default).to_string());
    let button = |image| control(ControlKind::Submit { image }, value_or(""));
    match v.name() {
        "input" => {
            let kind = v.attr("type").unwrap_or("text").trim().to_ascii_lowercase();
            match kind.as_str() {
                "submit" => controls.push(button(false)),
                "image" => controls.push(button(true)),
                "reset" | "button" => {}
                _ if name.is_empty() => {}
                "hidden" => controls.push(control(ControlKind::Hidden, value_or(""))),
                "checkbox" | "radio" => {
                    let checked = v.attr("checked").is_some();
                    let value = if checked { value_or("on") } else { None };
                    controls.push(control(ControlKind::Toggle, value));
                }
                "file" => controls.push(control(ControlKind::File(None), None)),
                _ => controls.push(control(ControlKind::Text, value_or(""))),
            }
        }
        "button" => {
            let kind = v.attr("type").unwrap_or("submit").trim();
            if kind.eq_ignore_ascii_case("submit") {
                controls.push(button(false));
            }
        }
        "textarea" if !name.is_empty() => {
            let text: String = el.text().collect();
            controls.push(control(ControlKind::Text, Some(text)));
        }
        "select" if !name.is_empty() => {
            let options: Vec<ElementRef> = el
                .descendent_elements()
                .filter(|o| o.value().name() == "option")
                .collect();
            let option_value = |o: &ElementRef| {
                o.value()
                    .attr("value")
                    .map(str::to_string)
                    .unwrap_or_else(|| {
                        o.text()
                            .collect::<String>()
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
            };
            let selected: Vec<&ElementRef> = options
                .iter()
                .filter(|o| o.value().attr("selected").is_some())
                .collect();
            if v.attr("multiple").is_some() {
                if selected.is_empty() {
                    controls.push(control(ControlKind::Select, None));
                }
                for o in selected {
                    controls.push(control(ControlKind::Select, Some(option_value(o))));
                }
            } else {
                // A drop-down shows its last selected option, or else its first enabled one.
                let shown = selected.last().copied().or_else(|| {
                    options
                        .iter()
                        .find(|o| o.value().attr("disabled").is_none())
                });
                controls.push(control(ControlKind::Select, shown.map(option_value)));
            }
        }
        _ => {}
    }
}

/// A short way to tell a form apart from the others on its page: `#id`, `name=…`, `.class` or
/// its action.
fn describe_form(form: ElementRef) -> String {
    let v = form.value();
    if let Some(id) = v.id() {
        format!("#{id}")
    } else if let Some(name) = v.attr("name") {
        format!("form[name={name}]")
    } else if let Some(class) = v.classes().next() {
        format!("form.{class}")
    } else {
        match v.attr("action") {
            Some(action) => format!("form[action=\"{action}\"]"),
            None => "form".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selectors(form: &str, submit: Option<&str>) -> Selectors {
        Selectors {
            form: Selector::parse(form).unwrap(),
            form_text: form.to_string(),
            submit: submit.map(|s| (Selector::parse(s).unwrap(), s.to_string())),
        }
    }

    const PAGE: &str = r#"<html><head><base href="/shop/"><meta name="CSRF-Token" content="t0k"></head>
        <body>
        <form id="search" action="/search"><input name="q"></form>
        <form id="feedback" method="POST" action="send" enctype="multipart/form-data">
          <input type="hidden" name="_csrf" value="abc">
          <input name="name" required>
          <input type="checkbox" name="copy" checked>
          <input type="checkbox" name="news" value="yes">
          <input type="radio" name="topic" value="a"><input type="radio" name="topic" value="b" checked>
          <select name="city"><option disabled>Pick</option><option>Moscow  City</option></select>
          <select name="tags" multiple><option selected value="x">X</option><option selected>Y</option></select>
          <textarea name="message">hello</textarea>
          <input name="gone" disabled>
          <fieldset disabled><input name="also-gone"></fieldset>
          <input type="file" name="attachment">
          <button type="button" name="preview">Preview</button>
          <button name="send" value="1">Send</button>
          <input type="submit" name="draft" value="Save" formaction="/draft" formmethod="get">
        </form>
        <input name="outside" form="feedback" value="o">
        <input name="other" form="search" value="s">
        </body></html>"#;

    fn pairs(form: &PageForm) -> Vec<(&str, Option<&str>)> {
        form.controls
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref()))
            .collect()
    }

    #[test]
    fn reads_what_a_browser_would_submit() {
        let form = read(PAGE, "page", &selectors("form#feedback", None)).unwrap();
        assert_eq!(form.method, reqwest::Method::POST);
        assert_eq!(form.action.as_deref(), Some("send"));
        assert!(form.multipart);
        assert_eq!(form.base.as_deref(), Some("/shop/"));
        assert_eq!(form.csrf_meta.as_deref(), Some("t0k"));
        assert_eq!(
            pairs(&form),
            [
                ("_csrf", Some("abc")),
                ("name", Some("")),
                ("copy", Some("on")),
                ("news", None),
                ("topic", None),
                ("topic", Some("b")),
                ("city", Some("Moscow City")),
                ("tags", Some("x")),
                ("tags", Some("Y")),
                ("message", Some("hello")),
                ("attachment", None),
                ("send", Some("1")),
                ("draft", Some("Save")),
                ("outside", Some("o")),
            ]
        );
        assert_eq!(form.submitter, Some(11));
        assert!(form.controls[1].required);
    }

    #[test]
    fn the_chosen_submit_button_overrides_action_and_method() {
        // The first match is used: #search, whose only control is `q` (and `other`, outside).
        let form = read(PAGE, "page", &selectors("form", None)).unwrap();
        assert_eq!(form.matched, 2);
        assert_eq!(pairs(&form), [("q", Some("")), ("other", Some("s"))]);
        assert_eq!(form.submitter, None);
        let err = read(
            PAGE,
            "page",
            &selectors("#feedback", Some("button[name=nope]")),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no submit button in form \"#feedback\" matches \"button[name=nope]\" (its submit buttons: name=send, name=draft)"
        );
        let form = read(
            PAGE,
            "page",
            &selectors("#feedback", Some("input[name=draft]")),
        )
        .unwrap();
        assert_eq!(form.method, reqwest::Method::GET);
        assert_eq!(form.action.as_deref(), Some("/draft"));
        assert_eq!(form.submitter, Some(12));
    }

    #[test]
    fn a_missing_form_names_the_forms_that_are_there() {
        let err = read(PAGE, "https://shop/contacts", &selectors("form#nope", None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no form matches \"form#nope\" on https://shop/contacts (the page has 2 forms: #search, #feedback)"
        );
        let err = read(PAGE, "p", &selectors("fieldset", None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no form matches \"fieldset\" on p (it matches a <fieldset>, which is not a form; the page has 2 forms: #search, #feedback)"
        );
        let err = read("<p>hi</p>", "p", &selectors("form", None)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no form matches \"form\" on p (the page has no form)"
        );
    }
}
