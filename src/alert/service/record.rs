//! What of a finished run goes into the history besides its result: the certificate expiries
//! and mailbox fills it observed (kept as last values for the status page and the digest), and
//! its phases, observations and details as a compact JSON for the ops page.
//!
//! The JSON is scrubbed with the installed redactors before it is stored (the runner already
//! scrubbed the failure and details; this also covers what a probe put into an observation),
//! and bounded: at most [`MAX_DETAILS`] bytes per run, however chatty the check.

use crate::alert::store::{LastValue, ValueKind};
use crate::outcome::{Observation, RunReport};
use serde_json::{Value, json};

/// Bytes of JSON kept per run at most.
pub const MAX_DETAILS: usize = 4096;
/// Items of each list kept at most.
const MAX_ITEMS: usize = 24;
/// Characters kept of one detail line.
const MAX_LINE: usize = 240;

/// The certificate expiries and mailbox fills `report` observed.
pub(super) fn observed_values(report: &RunReport) -> Vec<LastValue> {
    report
        .observations
        .iter()
        .filter_map(|o| match o {
            Observation::Cert(c) => Some(LastValue {
                kind: ValueKind::CertNotAfter,
                subject: c.target.clone(),
                value: c.leaf_not_after.min(c.chain_not_after) as f64,
            }),
            Observation::MailboxQuota { mailbox, ratio } => Some(LastValue {
                kind: ValueKind::MailboxFill,
                subject: mailbox.clone(),
                value: *ratio,
            }),
            Observation::HttpStatus(_)
            | Observation::BodyTruncated
            | Observation::DeliveryLatency(_)
            | Observation::AutoReplyLatency(_)
            | Observation::ChatFirstResponse(_)
            | Observation::PhoneRing(_)
            | Observation::PhoneAnswer(_)
            | Observation::PhoneAudioLevel(_)
            | Observation::Evidence(_)
            | Observation::SpfLookups { .. } => None,
        })
        .collect()
}

/// One observation as the ops page shows it.
fn observation(o: &Observation) -> Value {
    match o {
        Observation::HttpStatus(code) => json!({ "kind": "http_status", "value": code }),
        Observation::BodyTruncated => json!({ "kind": "body_truncated" }),
        Observation::Cert(c) => json!({
            "kind": "cert",
            "target": c.target,
            "not_after": c.leaf_not_after.min(c.chain_not_after),
            "chain_verified": c.chain_verified,
            "name_matches": c.name_matches,
        }),
        Observation::DeliveryLatency(d) => {
            json!({ "kind": "delivery_latency", "seconds": d.as_secs_f64() })
        }
        Observation::AutoReplyLatency(d) => {
            json!({ "kind": "auto_reply_latency", "seconds": d.as_secs_f64() })
        }
        Observation::ChatFirstResponse(d) => {
            json!({ "kind": "chat_first_response", "seconds": d.as_secs_f64() })
        }
        Observation::PhoneRing(d) => json!({ "kind": "phone_ring", "seconds": d.as_secs_f64() }),
        Observation::PhoneAnswer(d) => {
            json!({ "kind": "phone_answer", "seconds": d.as_secs_f64() })
        }
        Observation::PhoneAudioLevel(db) => json!({ "kind": "phone_audio_dbfs", "value": db }),
        Observation::MailboxQuota { mailbox, ratio } => {
            json!({ "kind": "mailbox_quota", "mailbox": mailbox, "ratio": ratio })
        }
        // The directory is the state's evidence link, shown apart; its path says nothing more.
        Observation::Evidence(_) => json!({ "kind": "evidence" }),
        Observation::SpfLookups { domain, lookups } => {
            json!({ "kind": "spf_lookups", "domain": domain, "value": lookups })
        }
    }
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_LINE) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// `report`'s phases (name, seconds, ok), observations and details as JSON, scrubbed and at
/// most [`MAX_DETAILS`] bytes (details, then observations, are dropped from the end to fit);
/// `None` when there is nothing to keep.
pub(super) fn run_details(report: &RunReport) -> Option<String> {
    let failed = !report.result.passed();
    let last = report.phases.len().saturating_sub(1);
    // A phase failed when it was still open as the attempt ended, or it is the last phase of a
    // failed run: where the run stopped.
    let phases: Vec<Value> = report
        .phases
        .iter()
        .enumerate()
        .take(MAX_ITEMS)
        .map(|(i, p)| {
            json!({
                "name": p.name,
                "seconds": p.duration.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0),
                "ok": p.duration.is_some() && !(failed && i == last),
            })
        })
        .collect();
    let mut observations: Vec<Value> = report
        .observations
        .iter()
        .take(MAX_ITEMS)
        .map(observation)
        .collect();
    let mut details: Vec<String> = report
        .details
        .iter()
        .take(MAX_ITEMS)
        .map(|d| clip(d))
        .collect();
    if phases.is_empty() && observations.is_empty() && details.is_empty() {
        return None;
    }
    loop {
        let text = json!({
            "phases": phases,
            "observations": observations,
            "details": details,
        })
        .to_string();
        let text = crate::value::redact::scrub_installed(&text);
        if text.len() <= MAX_DETAILS {
            return Some(text);
        }
        if details.pop().is_none() && observations.pop().is_none() {
            // Phases alone: names from a bounded set, never this long in practice.
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{CertReport, RunResult};
    use std::time::{Duration, SystemTime};

    fn report() -> RunReport {
        RunReport {
            check: "site-cert".into(),
            kind: "tls",
            channel: "website",
            run_id: 1,
            token: String::new(),
            started_at: SystemTime::UNIX_EPOCH,
            lag: None,
            duration: Duration::from_secs(1),
            attempts: 1,
            result: RunResult::Success,
            phases: Vec::new(),
            failure: None,
            observations: vec![
                Observation::Cert(CertReport {
                    target: "shop.example:443".into(),
                    leaf_not_after: 2_000,
                    chain_not_after: 1_000,
                    chain_verified: true,
                    name_matches: true,
                }),
                Observation::MailboxQuota {
                    mailbox: "support".into(),
                    ratio: 0.83,
                },
                Observation::HttpStatus(200),
            ],
            details: Vec::new(),
        }
    }

    #[test]
    fn certificates_and_mailboxes_become_last_values() {
        let values = observed_values(&report());
        assert_eq!(
            values,
            vec![
                LastValue {
                    kind: ValueKind::CertNotAfter,
                    subject: "shop.example:443".into(),
                    value: 1_000.0,
                },
                LastValue {
                    kind: ValueKind::MailboxFill,
                    subject: "support".into(),
                    value: 0.83,
                },
            ]
        );
    }

    #[test]
    fn details_are_bounded_whatever_the_check_says() {
        let mut chatty = report();
        chatty.details = (0..1000)
            .map(|i| format!("line {i} {}", "x".repeat(500)))
            .collect();
        let text = run_details(&chatty).expect("details");
        assert!(text.len() <= MAX_DETAILS, "{}", text.len());
        let value: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(value["observations"][2]["value"], 200);
        assert!(!value["details"].as_array().expect("details").is_empty());
        assert_eq!(
            run_details(&RunReport {
                observations: Vec::new(),
                ..report()
            }),
            None
        );
    }
}
