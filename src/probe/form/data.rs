//! The form's data set: the check's fields and files filled in, `required` checked, and encoded
//! the way a browser would send it (URL-encoded, or multipart with files).

use super::FormSpec;
use super::error::FormError;
use super::page::{Control, ControlKind, PageForm, Upload};
use crate::value::TemplateVars;

/// One entry of what is submitted.
enum Value<'a> {
    Text(&'a str),
    File(Option<&'a Upload>),
}

/// How many entries of each origin a submission carries, for `check` output.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Hidden inputs carried as the page had them (nonces, CSRF tokens).
    pub hidden: usize,
    /// Other values carried as the page had them (checked boxes, selected options, ...).
    pub defaults: usize,
    /// Values set from the check's `fields`.
    pub filled: usize,
    /// Files attached from the check's `files`.
    pub files: usize,
}

impl PageForm {
    /// Names that `fields` and `files` may use, in form order, each once.
    pub fn field_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for c in self.fillable() {
            if !names.contains(&c.name.as_str()) {
                names.push(&c.name);
            }
        }
        names
    }

    fn fillable(&self) -> impl Iterator<Item = &Control> {
        self.controls
            .iter()
            .filter(|c| !matches!(c.kind, ControlKind::Submit { .. }))
    }

    fn unknown(&self, field: &str) -> FormError {
        FormError::UnknownField {
            form: self.selector.clone(),
            field: field.to_string(),
            fields: self.field_names().iter().map(ToString::to_string).collect(),
        }
    }

    /// Sets field `name` to `value`. A name several controls share (radio buttons, a box group)
    /// ends up submitted once, with `value`.
    pub fn fill(&mut self, name: &str, value: String) -> Result<(), FormError> {
        let mut value = Some(value);
        let mut found = false;
        for c in self.controls.iter_mut().filter(|c| c.name == name) {
            match c.kind {
                ControlKind::Submit { .. } => continue,
                ControlKind::File(_) => {
                    return Err(FormError::FileUnderFields {
                        field: name.to_string(),
                    });
                }
                _ => {}
            }
            found = true;
            c.value = value.take();
            c.filled = true;
        }
        if found {
            Ok(())
        } else {
            Err(self.unknown(name))
        }
    }

    /// Attaches `upload` to the file input `name`.
    pub fn attach(&mut self, name: &str, upload: Upload) -> Result<(), FormError> {
        if !self.multipart {
            return Err(FormError::NotMultipart {
                form: self.selector.clone(),
            });
        }
        if !self.controls.iter().any(|c| c.name == name) {
            return Err(self.unknown(name));
        }
        let Some(input) = self
            .controls
            .iter_mut()
            .find(|c| c.name == name && matches!(c.kind, ControlKind::File(_)))
        else {
            return Err(FormError::NotAFileInput {
                field: name.to_string(),
            });
        };
        input.kind = ControlKind::File(Some(upload));
        input.filled = true;
        Ok(())
    }

    /// Fills in the check's fields and files and checks nothing `required` is left empty.
    pub fn fill_in(&mut self, spec: &FormSpec, vars: &TemplateVars<'_>) -> Result<(), FormError> {
        for (name, value) in &spec.fields {
            self.fill(name, value.render(vars))?;
        }
        for (name, file) in &spec.files {
            self.attach(
                name,
                Upload {
                    file_name: file.name.clone(),
                    content: file.content.render(vars),
                    content_type: file
                        .content_type
                        .clone()
                        .unwrap_or_else(|| OCTET_STREAM.into()),
                },
            )?;
        }
        self.check_required()
    }

    /// Fails on the first `required` field that is still empty, as a browser would refuse to
    /// submit. A name shared by several controls (a radio group) needs one of them set.
    pub fn check_required(&self) -> Result<(), FormError> {
        for name in self.field_names() {
            let group = || self.fillable().filter(move |c| c.name == name);
            if !group().any(|c| c.required) {
                continue;
            }
            let set = group().any(|c| match &c.kind {
                ControlKind::File(upload) => upload.is_some(),
                _ => c.value.as_deref().is_some_and(|v| !v.is_empty()),
            });
            if !set {
                let file = group().any(|c| matches!(c.kind, ControlKind::File(_)));
                return Err(FormError::RequiredEmpty {
                    form: self.selector.clone(),
                    field: name.to_string(),
                    file,
                });
            }
        }
        Ok(())
    }

    /// The entries submitted, in tree order, each with the control it comes from.
    fn entries(&self) -> Vec<(String, Value<'_>, &Control)> {
        let mut out = Vec::new();
        for (i, c) in self.controls.iter().enumerate() {
            match &c.kind {
                ControlKind::Submit { image } => {
                    if self.submitter != Some(i) {
                        continue;
                    }
                    if *image {
                        // An image button sends where it was clicked instead of its value.
                        let prefix = if c.name.is_empty() {
                            String::new()
                        } else {
                            format!("{}.", c.name)
                        };
                        out.push((format!("{prefix}x"), Value::Text("0"), c));
                        out.push((format!("{prefix}y"), Value::Text("0"), c));
                    } else if !c.name.is_empty() {
                        out.push((c.name.clone(), Value::Text(value_of(c)), c));
                    }
                }
                ControlKind::File(upload) => {
                    out.push((c.name.clone(), Value::File(upload.as_ref()), c))
                }
                _ => {
                    if let Some(v) = &c.value {
                        out.push((c.name.clone(), Value::Text(v), c));
                    }
                }
            }
        }
        out
    }

    /// Where the submitted entries come from.
    pub fn tally(&self) -> Tally {
        let mut tally = Tally::default();
        for (_, value, control) in self.entries() {
            match (value, &control.kind) {
                (Value::File(Some(_)), _) => tally.files += 1,
                (Value::File(None), _) | (_, ControlKind::Submit { .. }) => {}
                _ if control.filled => tally.filled += 1,
                (_, ControlKind::Hidden) => tally.hidden += 1,
                _ => tally.defaults += 1,
            }
        }
        tally
    }

    /// `application/x-www-form-urlencoded`, for a POST body or a GET query. A file input sends
    /// its file's name, as a browser does when the form is not multipart.
    pub fn urlencoded(&self) -> String {
        let mut encoder = url::form_urlencoded::Serializer::new(String::new());
        for (name, value, _) in self.entries() {
            let value = match value {
                Value::Text(v) => v,
                Value::File(upload) => upload.map(|u| u.file_name.as_str()).unwrap_or(""),
            };
            encoder.append_pair(&name, value);
        }
        encoder.finish()
    }

    /// `multipart/form-data`. A file input without a file sends an empty part, as a browser
    /// does.
    pub fn multipart(&self) -> Result<reqwest::multipart::Form, reqwest::Error> {
        let mut form = reqwest::multipart::Form::new();
        for (name, value, _) in self.entries() {
            form = match value {
                Value::Text(v) => form.text(name, v.to_string()),
                Value::File(upload) => {
                    let (file_name, content, content_type) = match upload {
                        Some(u) => (
                            u.file_name.clone(),
                            u.content.clone(),
                            u.content_type.as_str(),
                        ),
                        None => (String::new(), String::new(), OCTET_STREAM),
                    };
                    let part = reqwest::multipart::Part::bytes(content.into_bytes())
                        .file_name(file_name)
                        .mime_str(content_type)?;
                    form.part(name, part)
                }
            };
        }
        Ok(form)
    }
}

/// The MIME type of a file whose type nobody stated.
const OCTET_STREAM: &str = "application/octet-stream";

fn value_of(c: &Control) -> &str {
    c.value.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::page::{Selectors, read};
    use super::*;
    use scraper::Selector;

    fn form(html: &str) -> PageForm {
        let selectors = Selectors {
            form: Selector::parse("form").unwrap(),
            form_text: "form".into(),
            submit: None,
        };
        read(html, "page", &selectors).unwrap()
    }

    const FORM: &str = r#"<form method=post enctype="multipart/form-data">
        <input type=hidden name=nonce value="n 1">
        <input name=name required>
        <input type=radio name=topic value=a required><input type=radio name=topic value=b>
        <input type=checkbox name=copy checked>
        <input type=file name=cv>
        <input type=image name=go src=go.png>
        </form>"#;

    #[test]
    fn filling_replaces_defaults_and_keeps_the_rest() {
        let mut f = form(FORM);
        f.fill("name", "Monitoring & Co".into()).unwrap();
        f.fill("topic", "b".into()).unwrap();
        assert_eq!(
            f.urlencoded(),
            "nonce=n+1&name=Monitoring+%26+Co&topic=b&copy=on&cv=&go.x=0&go.y=0"
        );
        assert_eq!(
            f.tally(),
            Tally {
                hidden: 1,
                defaults: 1,
                filled: 2,
                files: 0
            }
        );
    }

    #[test]
    fn unknown_fields_and_empty_required_fields_are_named() {
        let mut f = form(FORM);
        assert_eq!(
            f.fill("nmae", "x".into()).unwrap_err().to_string(),
            "form \"form\" has no field \"nmae\" (its fields: nonce, name, topic, copy, cv)"
        );
        assert_eq!(
            f.check_required().unwrap_err().to_string(),
            "required field \"name\" of form \"form\" is empty; set it under `fields:`"
        );
        f.fill("name", "x".into()).unwrap();
        assert_eq!(
            f.check_required().unwrap_err().to_string(),
            "required field \"topic\" of form \"form\" is empty; set it under `fields:`"
        );
        f.fill("topic", "a".into()).unwrap();
        assert!(f.check_required().is_ok());
        assert_eq!(
            f.fill("cv", "x".into()).unwrap_err().to_string(),
            "field \"cv\" is a file input; set it under `files:`"
        );
    }

    #[test]
    fn files_need_a_multipart_form_and_a_file_input() {
        let upload = || Upload {
            file_name: "t.txt".into(),
            content: "hi".into(),
            content_type: "text/plain".into(),
        };
        let mut f = form(FORM);
        assert_eq!(
            f.attach("name", upload()).unwrap_err().to_string(),
            "field \"name\" is not a file input; set it under `fields:`"
        );
        f.attach("cv", upload()).unwrap();
        assert_eq!(f.tally().files, 1);
        assert!(f.multipart().is_ok());
        let mut plain = form("<form><input name=a><input type=file name=cv></form>");
        assert_eq!(
            plain.attach("cv", upload()).unwrap_err().to_string(),
            "form \"form\" is not multipart/form-data, so it cannot send files; remove `files:` or pick another form"
        );
    }
}
