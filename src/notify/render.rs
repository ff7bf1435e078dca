//! Alert texts: plain words for shop owners, the technical reason for ops, in Russian or English.

use super::Notification;

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line: subject of a mail, first line of a chat message.
    pub title: String,
    /// Lines after the title.
    pub body: String,
}

/// Renders a notification for its audience and language.
pub fn render(n: &Notification) -> Rendered {
    Rendered {
        title: format!("supportwatch: {}", n.shop),
        body: String::new(),
    }
}
