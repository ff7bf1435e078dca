//! The closed sets every layer names: check kinds and support channels (both metric labels).

use serde::Deserialize;
use std::fmt;

/// Check kinds, the `kind` label.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// `http`
    Http,
    /// `tls`
    Tls,
    /// `dns`
    Dns,
    /// `form`
    Form,
    /// `mail`
    Mail,
    /// `browser`
    Browser,
    /// `callback`
    Callback,
    /// `chat`
    Chat,
    /// `phone`
    Phone,
}

impl Kind {
    /// The label value and config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Tls => "tls",
            Kind::Dns => "dns",
            Kind::Form => "form",
            Kind::Mail => "mail",
            Kind::Browser => "browser",
            Kind::Callback => "callback",
            Kind::Chat => "chat",
            Kind::Phone => "phone",
        }
    }

    /// The channel a check of this kind proves when it names none. Exhaustive on purpose: a new
    /// kind must decide which channel it belongs to.
    pub fn default_channel(self) -> Channel {
        match self {
            Kind::Callback => Channel::Callback,
            Kind::Phone => Channel::Phone,
            Kind::Chat
            | Kind::Http
            | Kind::Tls
            | Kind::Dns
            | Kind::Form
            | Kind::Mail
            | Kind::Browser => Channel::Website,
        }
    }
}

impl Kind {
    /// Why `resolve:` (host overrides) has no meaning for this kind, or `None` when every
    /// connection a check of this kind makes honours it. Exhaustive, so a new kind decides.
    pub fn ignores_resolve(self) -> Option<&'static str> {
        match self {
            Kind::Http | Kind::Form | Kind::Callback | Kind::Chat | Kind::Tls | Kind::Browser => {
                None
            }
            Kind::Dns => Some("a `dns` check asks DNS itself; set `nameserver` instead"),
            Kind::Phone => Some(
                "a `phone` check connects where its SIP URI (or its account's proxy) says; write \
                 the address there",
            ),
            Kind::Mail => Some(
                "a `mail` check's SMTP connection takes no host overrides; write the server's \
                 address in `smtp`",
            ),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Support channels, the closed set of `channel` label values.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// Feedback / contact form.
    FeedbackForm,
    /// Callback request.
    Callback,
    /// Chat widget or bot.
    Chat,
    /// Support mailbox.
    Email,
    /// Telephone line.
    Phone,
    /// The shop's web site itself.
    Website,
}

impl Channel {
    /// Every channel, in the order owners see them (status page, weekly digest).
    pub const ALL: [Channel; 6] = [
        Channel::FeedbackForm,
        Channel::Callback,
        Channel::Chat,
        Channel::Email,
        Channel::Phone,
        Channel::Website,
    ];

    /// The channel whose label value is `name` (as stored in the run history).
    pub fn from_label(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::FeedbackForm => "feedback_form",
            Channel::Callback => "callback",
            Channel::Chat => "chat",
            Channel::Email => "email",
            Channel::Phone => "phone",
            Channel::Website => "website",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod channel_tests {
    use super::Channel;

    /// Exhaustive: a new channel does not compile here until it is named, and then the test
    /// below requires it in `Channel::ALL`.
    fn named(c: Channel) -> Channel {
        match c {
            Channel::FeedbackForm
            | Channel::Callback
            | Channel::Chat
            | Channel::Email
            | Channel::Phone
            | Channel::Website => c,
        }
    }

    #[test]
    fn every_channel_is_listed_once_and_found_by_its_label() {
        let every = [
            Channel::FeedbackForm,
            Channel::Callback,
            Channel::Chat,
            Channel::Email,
            Channel::Phone,
            Channel::Website,
        ];
        assert_eq!(Channel::ALL.len(), every.len());
        for c in every.map(named) {
            assert!(
                Channel::ALL.contains(&c),
                "{c} is missing from Channel::ALL"
            );
            assert_eq!(Channel::from_label(c.as_str()), Some(c));
        }
        assert_eq!(Channel::from_label("fax"), None);
    }
}
