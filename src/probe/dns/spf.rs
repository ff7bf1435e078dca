//! SPF (RFC 7208): parsing one record, and walking `include:`/`redirect=` to count the DNS
//! lookups a receiver needs to evaluate it.
//!
//! The parser follows the RFC's grammar rather than matching strings: an unknown mechanism is a
//! syntax error (a receiver returns `permerror` and the whole record is void), unknown modifiers
//! are ignored as the RFC requires, and `redirect=`/`exp=` may appear once. The walk resolves
//! every literal include and redirect target for real, so a provider that grows its record past
//! the limit of 10 lookups is caught the day it happens. Targets built from macros (`%{i}`) depend
//! on the sender and cannot be followed; they count one lookup each.
//!
//! Parsing a record is in `record`; this file walks the records and counts.

mod record;

pub use record::Qualifier;

use futures::future::BoxFuture;
use record::{Mechanism, SpfRecord, select};
use std::collections::HashMap;
use std::sync::Arc;

/// Lookups counted at most; the walk stops there so a hostile record cannot make us query forever.
pub(super) const HARD_CAP: u32 = 100;

/// Where TXT records come from: the probe's resolver, or a table in tests.
pub(super) trait TxtSource: Send + Sync {
    /// TXT records at `name`, each with its strings joined. `Ok(empty)` when there are none
    /// (NXDOMAIN included); `Err` when no answer could be had.
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>>;
}

/// What the walk found for the top domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpfReport {
    /// The `all` that ends evaluation, following `redirect=`; `None` means neutral by default.
    pub all: Option<Qualifier>,
    /// DNS lookups counted through includes and redirects.
    pub lookups: u32,
}

/// Evaluates `domain`'s SPF record far enough to count its lookups.
pub(super) async fn evaluate(source: &dyn TxtSource, domain: &str) -> Result<SpfReport, String> {
    let mut walk = Walk {
        source,
        records: HashMap::new(),
        lookups: 0,
        path: Vec::new(),
    };
    let all = walk.visit(normalise(domain)).await?;
    Ok(SpfReport {
        all,
        lookups: walk.lookups,
    })
}

fn normalise(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

struct Walk<'a> {
    source: &'a dyn TxtSource,
    /// Records already fetched: a domain included twice is counted twice (as a receiver would
    /// evaluate it twice) but queried once.
    records: HashMap<String, Arc<SpfRecord>>,
    lookups: u32,
    /// The include/redirect chain to the record being visited, for the loop guard.
    path: Vec<String>,
}

impl Walk<'_> {
    /// Counts `domain`'s lookups and returns the `all` qualifier its evaluation ends with.
    fn visit(&mut self, domain: String) -> BoxFuture<'_, Result<Option<Qualifier>, String>> {
        Box::pin(async move {
            if self.path.contains(&domain) {
                let mut chain = self.path.clone();
                chain.push(domain);
                return Err(format!("SPF include loop: {}", chain.join(" → ")));
            }
            let record = self.record(&domain).await?;
            self.lookups = self.lookups.saturating_add(record.own_lookups());
            if self.lookups > HARD_CAP {
                return Ok(record.all());
            }
            self.path.push(domain);
            for d in &record.directives {
                if let Mechanism::Include(target) = &d.mechanism
                    && !target.contains('%')
                {
                    self.visit(normalise(target)).await?;
                    if self.lookups > HARD_CAP {
                        break;
                    }
                }
            }
            let mut all = record.all();
            if let Some(target) = record.effective_redirect()
                && !target.contains('%')
                && self.lookups <= HARD_CAP
            {
                all = self.visit(normalise(target)).await?;
            }
            self.path.pop();
            Ok(all)
        })
    }

    async fn record(&mut self, domain: &str) -> Result<Arc<SpfRecord>, String> {
        if let Some(r) = self.records.get(domain) {
            return Ok(r.clone());
        }
        let reached = match self.path.first() {
            Some(top) => format!(" (reached from {top})"),
            None => String::new(),
        };
        let txt = self
            .source
            .txt(domain)
            .await
            .map_err(|e| format!("SPF of {domain}{reached}: {e}"))?;
        let text =
            select(domain, &txt)?.ok_or_else(|| format!("no SPF record for {domain}{reached}"))?;
        let record = SpfRecord::parse(text)
            .map_err(|e| format!("SPF record of {domain}{reached} is invalid: {e}"))?;
        let record = Arc::new(record);
        self.records.insert(domain.to_string(), record.clone());
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table(HashMap<&'static str, Vec<&'static str>>);

    impl TxtSource for Table {
        fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
            let found = self
                .0
                .get(name)
                .map(|v| v.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default();
            Box::pin(async move { Ok(found) })
        }
    }

    fn table(rows: &[(&'static str, &'static str)]) -> Table {
        let mut map: HashMap<&'static str, Vec<&'static str>> = HashMap::new();
        for (k, v) in rows {
            map.entry(k).or_default().push(v);
        }
        Table(map)
    }

    #[tokio::test]
    async fn counts_through_includes_and_redirects() {
        let t = table(&[
            (
                "shop.example",
                "v=spf1 a mx include:p.example redirect=r.example",
            ),
            ("p.example", "v=spf1 include:q.example ~all"),
            ("q.example", "v=spf1 a ?all"),
            ("r.example", "v=spf1 exists:%{i}.r.example -all"),
        ]);
        let report = evaluate(&t, "Shop.Example.").await.unwrap();
        // a, mx, include, redirect (4) + include (1) + a (1) + exists (1)
        assert_eq!(report.lookups, 7);
        assert_eq!(report.all, Some(Qualifier::Fail));
    }

    #[tokio::test]
    async fn guards_against_loops_and_missing_targets() {
        let t = table(&[
            ("a.example", "v=spf1 include:b.example -all"),
            ("b.example", "v=spf1 include:a.example -all"),
        ]);
        let err = evaluate(&t, "a.example").await.unwrap_err();
        assert!(
            err.contains("loop: a.example → b.example → a.example"),
            "{err}"
        );
        let t = table(&[("a.example", "v=spf1 include:gone.example -all")]);
        let err = evaluate(&t, "a.example").await.unwrap_err();
        assert_eq!(
            err,
            "no SPF record for gone.example (reached from a.example)"
        );
    }

    #[tokio::test]
    async fn stops_at_the_hard_cap() {
        // Each level includes the next one twice: the count doubles per level.
        let t = table(&[
            ("l0.example", "v=spf1 include:l1.example include:l1.example"),
            ("l1.example", "v=spf1 include:l2.example include:l2.example"),
            ("l2.example", "v=spf1 include:l3.example include:l3.example"),
            ("l3.example", "v=spf1 include:l4.example include:l4.example"),
            ("l4.example", "v=spf1 include:l5.example include:l5.example"),
            ("l5.example", "v=spf1 include:l6.example include:l6.example"),
            ("l6.example", "v=spf1 a a a a a a a a"),
        ]);
        let report = evaluate(&t, "l0.example").await.unwrap();
        assert!(report.lookups > HARD_CAP && report.lookups < 2 * HARD_CAP);
    }
}
