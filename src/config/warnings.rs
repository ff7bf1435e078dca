//! Warnings `validate` prints: configs that load and run, but probably not as the user meant.
//!
//! A check whose failures reach no notifier, and a mail check whose alerts could only travel
//! through the very mail server it checks.

use super::{Check, CheckSpec, Config};
use crate::alert::routes::targets;
use crate::notify::{NotifierSpec, ServiceSpec};
use crate::value::{Channel, Kind};
use std::collections::BTreeSet;

/// Hosts a check depends on to receive mail: the SMTP server of a `mail` check and the IMAP
/// server of the mailbox its deliveries are proven in.
fn mail_hosts(check: &Check, config: &Config) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    if let CheckSpec::Mail(spec) = &check.spec
        && let Ok(target) = crate::probe::mail::target::Target::parse(&spec.smtp)
    {
        hosts.insert(target.host);
    }
    let (deliver, _) = check.spec.deliveries();
    if let Some(mailbox) = deliver
        .and_then(|d| d.mailbox.as_ref())
        .and_then(|m| config.mailboxes.get(m))
        && mailbox.imap.is_some()
        && let Ok(target) = crate::mailbox::imap::ImapTarget::parse(mailbox)
    {
        hosts.insert(target.host.to_ascii_lowercase());
    }
    hosts
}

/// Warnings `validate` prints: checks whose failures nobody would hear of, and mail checks that
/// could only be reported through the mail server they check.
pub fn warnings(config: &Config) -> Vec<String> {
    let notifiers = &config.notifiers;
    let routes = &config.alerting.routes;
    let mut out = Vec::new();
    if notifiers.is_empty() {
        return out;
    }
    for check in &config.checks {
        if check.alert.as_ref().and_then(|a| a.enabled) == Some(false) {
            continue;
        }
        let targets = targets(&check.alert_rules(), routes);
        if targets.is_empty() {
            out.push(format!(
                "check \"{}\": no route reaches a notifier; its failures show only in metrics",
                check.name
            ));
            continue;
        }
        let mail_channel = matches!(check.channel, Channel::Email | Channel::FeedbackForm)
            || check.kind() == Kind::Mail;
        if !mail_channel {
            continue;
        }
        let hosts = mail_hosts(check, config);
        let through_same_mail = |name: &str| {
            notifiers.get(name).is_some_and(|spec: &NotifierSpec| {
                matches!(spec.service, ServiceSpec::Email(_))
                    && (hosts.is_empty()
                        || crate::notify::mail_server(spec).is_some_and(|h| hosts.contains(&h)))
            })
        };
        let every_way = targets
            .iter()
            .flat_map(|t| std::iter::once(&t.notifier).chain(t.fallback.iter()))
            .all(|n| through_same_mail(n));
        if every_way {
            out.push(format!(
                "check \"{}\": its alerts can only reach people by e-mail through the mail \
                 server it checks{}; add a notifier that does not depend on it (telegram, \
                 webhook, ...) as a route or a fallback",
                check.name,
                if hosts.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        hosts.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                }
            ));
        }
    }
    out
}
