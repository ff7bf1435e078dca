//! Why a form could not be filled in or submitted. Each message names the form, the field or the
//! selector involved, and what to change in the check; none holds a field's value.

/// Why a form could not be filled in or submitted; each names what to change.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FormError {
    /// The selector matched no form.
    #[error("no form matches \"{selector}\" on {page} ({})", page_forms(.not_a_form, .forms))]
    NoForm {
        selector: String,
        page: String,
        /// Descriptions of the page's forms (`#id`, ...).
        forms: Vec<String>,
        /// The element the selector matched instead, if any.
        not_a_form: Option<String>,
    },
    /// `submit` matched no submit button of the form.
    #[error("no submit button in form \"{form}\" matches \"{selector}\" ({})", list_buttons(.buttons))]
    NoSubmit {
        form: String,
        selector: String,
        buttons: Vec<String>,
    },
    /// A `fields` or `files` name the form does not have.
    #[error("form \"{form}\" has no field \"{field}\" ({})", list_fields(.fields))]
    UnknownField {
        form: String,
        field: String,
        fields: Vec<String>,
    },
    /// A `fields` name that is a file input.
    #[error("field \"{field}\" is a file input; set it under `files:`")]
    FileUnderFields { field: String },
    /// A `files` name that is not a file input.
    #[error("field \"{field}\" is not a file input; set it under `fields:`")]
    NotAFileInput { field: String },
    /// `files` for a form that cannot carry them.
    #[error(
        "form \"{form}\" is not multipart/form-data, so it cannot send files; remove `files:` or pick another form"
    )]
    NotMultipart { form: String },
    /// A `required` field still empty after filling.
    #[error("required field \"{field}\" of form \"{form}\" is empty; set it under `{}:`", if *.file { "files" } else { "fields" })]
    RequiredEmpty {
        form: String,
        field: String,
        file: bool,
    },
    /// The form does not submit to an HTTP URL (`javascript:`, `mailto:`, or a broken URL).
    #[error(
        "form \"{form}\" submits to `{action}`, which is not an http(s) URL; set `action:` to the URL its script posts to"
    )]
    BadAction { form: String, action: String },
}

fn page_forms(not_a_form: &Option<String>, forms: &[String]) -> String {
    let matched = not_a_form
        .as_ref()
        .map(|tag| format!("it matches a <{tag}>, which is not a form; "))
        .unwrap_or_default();
    let forms = match forms.len() {
        0 => "the page has no form".to_string(),
        1 => format!("the page has 1 form: {}", forms[0]),
        n => format!("the page has {n} forms: {}", forms.join(", ")),
    };
    format!("{matched}{forms}")
}

fn list_buttons(buttons: &[String]) -> String {
    if buttons.is_empty() {
        "it has no submit button".into()
    } else {
        format!("its submit buttons: {}", buttons.join(", "))
    }
}

fn list_fields(fields: &[String]) -> String {
    if fields.is_empty() {
        "it has no named fields".into()
    } else {
        format!("its fields: {}", fields.join(", "))
    }
}
