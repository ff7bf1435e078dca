//! `dns` checks against a real resolver: dnsmasq on a free 127.0.0.1 port, serving only local
//! records (`--no-resolv`, no `--server`, `--local=/test/`), so no query ever leaves the machine.
//!
//! dnsmasq comes from Debian's `dnsmasq-base` package; CI installs it.

mod common;

use common::dnsmasq::Dnsmasq;
use std::path::PathBuf;
use supportwatch::outcome::{FailureKind, Observation};
use supportwatch::outcome::{RunReport, RunResult};

/// The zone the tests query; every record lives under `.test`.
const RECORDS: &[&str] = &[
    // A healthy shop.
    "--address=/shop.test/127.0.0.1",
    "--mx-host=shop.test,mail.shop.test,10",
    "--host-record=mail.shop.test,127.0.0.2",
    "--txt-record=shop.test,v=spf1 ip4:127.0.0.0/8 include:spf.provider.test -all",
    "--txt-record=shop.test,shop-verification=abc123",
    "--txt-record=spf.provider.test,v=spf1 ip4:10.0.0.0/8 ~all",
    "--txt-record=_dmarc.shop.test,v=DMARC1; p=reject; rua=mailto:d@shop.test",
    // A shop with problems: its MX host does not resolve, SPF allows everyone, DMARC is p=none.
    "--host-record=bad.test,127.0.0.3",
    "--mx-host=bad.test,nowhere.bad.test,10",
    "--txt-record=bad.test,v=spf1 +all",
    "--txt-record=_dmarc.bad.test,v=DMARC1; p=none",
    // A domain with no MX at all.
    "--host-record=nomx.test,127.0.0.4",
    // Two SPF records: a permerror.
    "--host-record=twospf.test,127.0.0.5",
    "--txt-record=twospf.test,v=spf1 -all",
    "--txt-record=twospf.test,v=spf1 ip4:10.0.0.1 -all",
    // SPF needing 12 lookups through a chain of includes (3 per level).
    "--txt-record=deep.test,v=spf1 a mx include:c1.deep.test -all",
    "--txt-record=c1.deep.test,v=spf1 a mx include:c2.deep.test -all",
    "--txt-record=c2.deep.test,v=spf1 a mx include:c3.deep.test -all",
    "--txt-record=c3.deep.test,v=spf1 a mx exists:%{i}.x.deep.test -all",
    // An include loop, and a syntax error.
    "--txt-record=loop.test,v=spf1 include:loop2.test -all",
    "--txt-record=loop2.test,v=spf1 include:loop.test -all",
    "--txt-record=typo.test,v=spf1 ip4:10.0.0.1 inclde:spf.provider.test -all",
];

fn start_dnsmasq() -> Dnsmasq {
    Dnsmasq::start(RECORDS)
}

/// Runs one `dns` check with `body` (YAML lines of the check after `kind`) against dnsmasq.
async fn run(dns: &Dnsmasq, body: &str) -> RunReport {
    let yaml = format!(
        "checks:\n  - name: t\n    kind: dns\n    channel: email\n    timeout: 10s\n    retries: 0\n    nameserver: \"127.0.0.1:{}\"\n{}",
        dns.port,
        indent(body)
    );
    let config = supportwatch::config::load_sources(&[(PathBuf::from("t.yaml"), yaml)])
        .unwrap_or_else(|e| panic!("config does not load: {e}"));
    let prepared = supportwatch::assemble::prepare(config)
        .unwrap_or_else(|e| panic!("check does not build: {e}"));
    supportwatch::runner::execute(&prepared.checks[0], 1, None).await
}

fn indent(body: &str) -> String {
    body.lines().map(|l| format!("    {l}\n")).collect()
}

fn failure(report: &RunReport) -> String {
    let f = report
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure, got {:?}", report.details));
    assert_eq!(f.kind, FailureKind::Dns, "{}", f.message);
    assert_eq!(report.result, RunResult::Failure);
    f.message.clone()
}

fn spf_lookups(report: &RunReport) -> Option<(String, u32)> {
    report.observations.iter().find_map(|o| match o {
        Observation::SpfLookups { domain, lookups } => Some((domain.clone(), *lookups)),
        _ => None,
    })
}

#[tokio::test]
async fn a_healthy_shop_passes() {
    let dns = start_dnsmasq();
    let report = run(
        &dns,
        "domain: shop.test\nrecords: [a, mx, txt]\nexpect:\n  a: [127.0.0.1]\n  txt: \"^shop-verification=\"\n  spf: true\n  dmarc: true\n  dmarc_min_policy: reject\n",
    )
    .await;
    assert_eq!(
        report.result,
        RunResult::Success,
        "{:?} {:?}",
        report.failure,
        report.details
    );
    let details = report.details.join("\n");
    for line in [
        "A 127.0.0.1",
        "MX 10 mail.shop.test (127.0.0.2)",
        "SPF: -all, 1 lookup",
        "DMARC: p=reject",
    ] {
        assert!(details.contains(line), "missing `{line}` in:\n{details}");
    }
    assert_eq!(spf_lookups(&report), Some(("shop.test".into(), 1)));
    let phases: Vec<&str> = report.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["resolve", "spf", "dmarc"]);
}

#[tokio::test]
async fn missing_and_wrong_records_fail() {
    let dns = start_dnsmasq();
    let report = run(&dns, "domain: nomx.test\nrecords: [a, mx]\n").await;
    assert_eq!(failure(&report), "no MX records for nomx.test");

    let report = run(&dns, "domain: bad.test\nrecords: [mx]\n").await;
    assert_eq!(
        failure(&report),
        "MX host nowhere.bad.test does not resolve"
    );
    assert!(
        report
            .details
            .contains(&"MX 10 nowhere.bad.test (does not resolve)".to_string()),
        "{:?}",
        report.details
    );

    let report = run(&dns, "domain: missing.test\n").await;
    assert_eq!(
        failure(&report),
        "NXDOMAIN: missing.test does not exist (A query)"
    );

    let report = run(&dns, "domain: shop.test\nexpect: {a: [127.0.0.9]}\n").await;
    assert_eq!(
        failure(&report),
        "A records of shop.test lack 127.0.0.9 (found 127.0.0.1)"
    );

    let report = run(
        &dns,
        "domain: shop.test\nrecords: [txt]\nexpect: {txt: \"^nope\"}\n",
    )
    .await;
    assert_eq!(
        failure(&report),
        "no TXT record of shop.test matches /^nope/"
    );
}

#[tokio::test]
async fn spf_problems_fail() {
    let dns = start_dnsmasq();
    let report = run(&dns, "domain: bad.test\nexpect: {spf: true}\n").await;
    assert_eq!(
        failure(&report),
        "SPF of bad.test allows every sender (+all)"
    );

    let report = run(
        &dns,
        "domain: deep.test\nrecords: []\nexpect: {spf: true}\n",
    )
    .await;
    assert_eq!(
        failure(&report),
        "SPF of deep.test needs 12 DNS lookups, the limit is 10"
    );
    assert_eq!(spf_lookups(&report), Some(("deep.test".into(), 12)));

    // The limit is configurable.
    let report = run(
        &dns,
        "domain: deep.test\nrecords: []\nexpect: {spf: true, spf_max_lookups: 12}\n",
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);

    let report = run(&dns, "domain: twospf.test\nexpect: {spf: true}\n").await;
    assert_eq!(
        failure(&report),
        "twospf.test has 2 SPF records, RFC 7208 allows one (permerror)"
    );

    let report = run(
        &dns,
        "domain: loop.test\nrecords: []\nexpect: {spf: true}\n",
    )
    .await;
    assert_eq!(
        failure(&report),
        "SPF include loop: loop.test → loop2.test → loop.test"
    );

    let report = run(
        &dns,
        "domain: typo.test\nrecords: []\nexpect: {spf: true}\n",
    )
    .await;
    assert_eq!(
        failure(&report),
        "SPF record of typo.test is invalid: unknown mechanism `inclde:spf.provider.test`"
    );

    let report = run(&dns, "domain: nomx.test\nexpect: {spf: true}\n").await;
    assert_eq!(failure(&report), "no SPF record for nomx.test");
}

#[tokio::test]
async fn dmarc_policy_is_checked() {
    let dns = start_dnsmasq();
    // p=none passes unless a stronger policy is demanded, but is reported as weak.
    let report = run(
        &dns,
        "domain: bad.test\nrecords: []\nexpect: {dmarc: true}\n",
    )
    .await;
    assert_eq!(report.result, RunResult::Success, "{:?}", report.failure);
    assert!(
        report
            .details
            .iter()
            .any(|d| d.starts_with("DMARC: p=none (weak")),
        "{:?}",
        report.details
    );

    let report = run(
        &dns,
        "domain: bad.test\nrecords: []\nexpect: {dmarc: true, dmarc_min_policy: quarantine}\n",
    )
    .await;
    assert_eq!(
        failure(&report),
        "DMARC policy of bad.test is p=none, expected at least quarantine"
    );

    let report = run(
        &dns,
        "domain: nomx.test\nrecords: []\nexpect: {dmarc: true}\n",
    )
    .await;
    assert_eq!(failure(&report), "no DMARC record at _dmarc.nomx.test");
}

#[test]
fn a_typo_inside_a_dns_check_is_rejected() {
    let yaml = "checks:\n  - name: t\n    kind: dns\n    channel: email\n    domain: shop.test\n    expect: {spff: true}\n";
    let err = supportwatch::config::load_sources(&[(PathBuf::from("t.yaml"), yaml.into())])
        .expect_err("unknown field must be rejected")
        .to_string();
    assert!(err.contains("spff"), "{err}");
}
