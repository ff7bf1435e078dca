//! `dns` checks: a shop's records exist, its MX hosts resolve, its SPF and DMARC records are sound.
//!
//! Mail from a shop's support desk lands in spam, or bounces, long before anyone notices a DNS
//! change went wrong; this check notices. Each attempt builds a fresh resolver with its cache
//! off, so a run sees what the name server says now, not what it said an interval ago.
//!
//! Phases: `resolve` (the listed records, MX hosts), `spf`, `dmarc`. Messages name domains as
//! resolved: domain names are public by nature, unlike URL query strings.

mod dmarc;
mod resolve;
mod spf;

pub use dmarc::Policy as DmarcPolicy;

use super::{Probe, Shared};
use crate::outcome::{FailureKind, Observation, Outcome, RunContext};
use crate::value::{Pattern, Text};
use futures::future::BoxFuture;
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use resolve::{Answer, Dns, ip_of, txt_of};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Config of a `dns` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// The name to check (`shop.example`); `${ENV}` allowed.
    pub domain: Text,
    /// Name server to ask (`192.0.2.1` or `192.0.2.1:5353`); the system's resolvers otherwise.
    pub nameserver: Option<Text>,
    /// Record types that must exist.
    #[serde(default = "default_records")]
    pub records: Vec<RecordKind>,
    /// What the answers must look like.
    #[serde(default)]
    pub expect: DnsExpect,
}

fn default_records() -> Vec<RecordKind> {
    vec![RecordKind::A]
}

/// Record types a `dns` check can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Text.
    Txt,
}

impl RecordKind {
    fn label(self) -> &'static str {
        match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Mx => "MX",
            RecordKind::Txt => "TXT",
        }
    }
    fn rtype(self) -> RecordType {
        match self {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Mx => RecordType::MX,
            RecordKind::Txt => RecordType::TXT,
        }
    }
}

/// Expectations on a domain's DNS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsExpect {
    /// Addresses the A answer must contain (needs `a` in `records`).
    #[serde(default)]
    pub a: Vec<Ipv4Addr>,
    /// Every MX host must resolve to A or AAAA; `true` by default when `mx` is requested.
    pub mx_resolve: Option<bool>,
    /// Regex some TXT record must match (needs `txt` in `records`).
    pub txt: Option<Pattern>,
    /// Require one valid SPF record.
    #[serde(default)]
    pub spf: bool,
    /// Require a DMARC record at `_dmarc.<domain>`.
    #[serde(default)]
    pub dmarc: bool,
    /// DNS lookups the SPF record may need, 10 by default (RFC 7208's limit).
    pub spf_max_lookups: Option<u32>,
    /// Weakest acceptable DMARC policy (`none`, `quarantine`, `reject`).
    pub dmarc_min_policy: Option<DmarcPolicy>,
}

const DEFAULT_SPF_MAX_LOOKUPS: u32 = 10;
/// Records of one type listed in details at most.
const MAX_LISTED: usize = 10;

/// Checks what serde cannot: a domain name, a name server address, coherent expectations.
pub fn validate(spec: &DnsSpec) -> Result<(), String> {
    domain_name(&spec.domain)?;
    if let Some(ns) = &spec.nameserver {
        nameserver_addr(ns)?;
    }
    let expect = &spec.expect;
    if spec.records.is_empty() && !expect.spf && !expect.dmarc {
        return Err("nothing to check: list `records` or set `expect.spf` / `expect.dmarc`".into());
    }
    for (i, kind) in spec.records.iter().enumerate() {
        if spec.records[..i].contains(kind) {
            return Err(format!(
                "`{}` is listed twice in `records`",
                kind.label().to_ascii_lowercase()
            ));
        }
    }
    let needs = |field: &str, kind: RecordKind| {
        format!(
            "expect.{field} needs `{}` in `records`",
            kind.label().to_ascii_lowercase()
        )
    };
    if !expect.a.is_empty() && !spec.records.contains(&RecordKind::A) {
        return Err(needs("a", RecordKind::A));
    }
    if expect.mx_resolve == Some(true) && !spec.records.contains(&RecordKind::Mx) {
        return Err(needs("mx_resolve", RecordKind::Mx));
    }
    if expect.txt.is_some() && !spec.records.contains(&RecordKind::Txt) {
        return Err(needs("txt", RecordKind::Txt));
    }
    if expect.spf_max_lookups.is_some() && !expect.spf {
        return Err("expect.spf_max_lookups needs `spf: true`".into());
    }
    if expect.spf_max_lookups == Some(0) {
        return Err("expect.spf_max_lookups must be at least 1".into());
    }
    if expect.dmarc_min_policy.is_some() && !expect.dmarc {
        return Err("expect.dmarc_min_policy needs `dmarc: true`".into());
    }
    Ok(())
}

/// `shop.example A MX TXT +spf +dmarc`, with `@nameserver` when one is set.
pub fn summary(spec: &DnsSpec) -> String {
    let mut parts = vec![spec.domain.to_string()];
    parts.extend(spec.records.iter().map(|r| r.label().to_string()));
    if spec.expect.spf {
        parts.push("+spf".into());
    }
    if spec.expect.dmarc {
        parts.push("+dmarc".into());
    }
    if let Some(ns) = &spec.nameserver {
        parts.push(format!("@{ns}"));
    }
    parts.join(" ")
}

/// The domain as an ASCII name (IDNs in punycode), lowercase, without the final dot.
fn domain_name(domain: &Text) -> Result<String, String> {
    let value = domain.expose().trim();
    if value.is_empty() || value == "." {
        return Err("`domain` is empty".into());
    }
    let name = Name::from_utf8(value)
        .map_err(|e| format!("`domain` `{domain}` is not a domain name: {e}"))?;
    Ok(name.to_ascii().trim_end_matches('.').to_ascii_lowercase())
}

/// `192.0.2.1`, `192.0.2.1:5353`, `2001:db8::1` or `[2001:db8::1]:53`.
fn nameserver_addr(ns: &Text) -> Result<SocketAddr, String> {
    let value = ns.expose().trim();
    value
        .parse::<SocketAddr>()
        .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| {
            format!(
                "invalid nameserver `{ns}`: expected an IP address with an optional port \
                 (`192.0.2.1`, `192.0.2.1:5353`, `[2001:db8::1]:53`)"
            )
        })
}

/// A ready-to-run `dns` check.
pub struct DnsProbe {
    spec: DnsSpec,
    domain: String,
    host: String,
    config: ResolverConfig,
    opts: ResolverOpts,
}

impl DnsProbe {
    /// Builds the probe; without `nameserver` it reads `/etc/resolv.conf` now, so a machine
    /// without one is a config error at load, not a failure at every run.
    pub fn build(spec: &DnsSpec, _shared: &Shared) -> Result<Self, String> {
        validate(spec)?;
        let domain = domain_name(&spec.domain)?;
        let (config, mut opts, host) = match &spec.nameserver {
            Some(ns) => {
                let addr = nameserver_addr(ns)?;
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                for connection in &mut server.connections {
                    connection.port = addr.port();
                }
                let config = ResolverConfig::from_name_servers(vec![server]);
                (config, ResolverOpts::default(), addr.to_string())
            }
            None => {
                let (config, opts) = hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| {
                        format!("cannot read the system resolvers from /etc/resolv.conf ({e}); set `nameserver`")
                    })?;
                (config, opts, domain.clone())
            }
        };
        // Fresh answers every run: no cache, and never /etc/hosts instead of DNS.
        opts.cache_size = 0;
        opts.use_hosts_file = ResolveHosts::Never;
        Ok(DnsProbe {
            spec: spec.clone(),
            domain,
            host,
            config,
            opts,
        })
    }

    fn resolver(&self) -> Result<Dns, String> {
        let mut builder = TokioResolver::builder_with_config(
            self.config.clone(),
            TokioRuntimeProvider::default(),
        );
        *builder.options_mut() = self.opts.clone();
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Dns { resolver })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let dns = match self.resolver() {
            Ok(dns) => dns,
            Err(e) => return Outcome::fail(FailureKind::Internal, e),
        };
        let mut outcome = Outcome::pass();
        if !self.spec.records.is_empty() {
            let exists = ctx
                .timed("resolve", self.check_records(&dns, &mut outcome))
                .await;
            if !exists {
                return outcome;
            }
        }
        if self.spec.expect.spf {
            ctx.timed("spf", self.check_spf(&dns, &mut outcome)).await;
        }
        if self.spec.expect.dmarc {
            ctx.timed("dmarc", self.check_dmarc(&dns, &mut outcome))
                .await;
        }
        outcome
    }

    /// Checks the listed record types; `false` when the domain does not exist at all.
    async fn check_records(&self, dns: &Dns, outcome: &mut Outcome) -> bool {
        let domain = &self.domain;
        let expect = &self.spec.expect;
        for &kind in &self.spec.records {
            let records = match dns.query(domain, kind.rtype()).await {
                Ok(Answer::NxDomain) => {
                    outcome.fail_with(
                        FailureKind::Dns,
                        format!("NXDOMAIN: {domain} does not exist ({} query)", kind.label()),
                    );
                    return false;
                }
                Ok(Answer::Records(records)) => records,
                Err(e) => {
                    outcome.fail_with(FailureKind::Dns, e);
                    continue;
                }
            };
            if records.is_empty() {
                outcome.fail_with(
                    FailureKind::Dns,
                    format!("no {} records for {domain}", kind.label()),
                );
                continue;
            }
            match kind {
                RecordKind::A | RecordKind::Aaaa => {
                    let ips: Vec<IpAddr> = records.iter().filter_map(ip_of).collect();
                    outcome
                        .details
                        .push(format!("{} {}", kind.label(), list(&ips)));
                    if kind == RecordKind::A {
                        for wanted in &expect.a {
                            if !ips.contains(&IpAddr::V4(*wanted)) {
                                outcome.fail_with(
                                    FailureKind::Dns,
                                    format!(
                                        "A records of {domain} lack {wanted} (found {})",
                                        list(&ips)
                                    ),
                                );
                            }
                        }
                    }
                }
                RecordKind::Mx => self.check_mx(dns, &records, outcome).await,
                RecordKind::Txt => {
                    let texts: Vec<String> = records.iter().filter_map(txt_of).collect();
                    for t in texts.iter().take(MAX_LISTED) {
                        outcome.details.push(format!("TXT {}", shorten(t)));
                    }
                    if let Some(p) = &expect.txt
                        && !texts.iter().any(|t| p.is_match(t))
                    {
                        outcome.fail_with(
                            FailureKind::Dns,
                            format!("no TXT record of {domain} matches /{}/", p.as_str()),
                        );
                    }
                }
            }
        }
        true
    }

    async fn check_mx(&self, dns: &Dns, records: &[RData], outcome: &mut Outcome) {
        let domain = &self.domain;
        let mut mx: Vec<(u16, String)> = records
            .iter()
            .filter_map(|r| match r {
                RData::MX(mx) => Some((
                    mx.preference,
                    mx.exchange.to_ascii().trim_end_matches('.').to_string(),
                )),
                _ => None,
            })
            .collect();
        mx.sort();
        // RFC 7505: a single `MX 0 .` says the domain accepts no mail.
        if let [(_, host)] = mx.as_slice()
            && host.is_empty()
        {
            outcome.details.push("MX 0 . (null MX)".into());
            outcome.fail_with(
                FailureKind::Dns,
                format!("{domain} has a null MX: it accepts no mail"),
            );
            return;
        }
        let resolve = self.spec.expect.mx_resolve.unwrap_or(true);
        for (i, (preference, host)) in mx.iter().enumerate() {
            if !resolve {
                if i < MAX_LISTED {
                    outcome.details.push(format!("MX {preference} {host}"));
                }
                continue;
            }
            let ips = match dns.addresses(host).await {
                Ok(ips) => ips,
                Err(e) => {
                    outcome
                        .details
                        .push(format!("MX {preference} {host} (error)"));
                    outcome.fail_with(FailureKind::Dns, e);
                    continue;
                }
            };
            if ips.is_empty() {
                outcome
                    .details
                    .push(format!("MX {preference} {host} (does not resolve)"));
                outcome.fail_with(FailureKind::Dns, format!("MX host {host} does not resolve"));
            } else if i < MAX_LISTED {
                outcome
                    .details
                    .push(format!("MX {preference} {host} ({})", list(&ips)));
            }
        }
    }

    async fn check_spf(&self, dns: &Dns, outcome: &mut Outcome) {
        let domain = &self.domain;
        let limit = self
            .spec
            .expect
            .spf_max_lookups
            .unwrap_or(DEFAULT_SPF_MAX_LOOKUPS);
        let report = match spf::evaluate(dns, domain).await {
            Ok(r) => r,
            Err(e) => {
                outcome.fail_with(FailureKind::Dns, e);
                return;
            }
        };
        outcome.observations.push(Observation::SpfLookups {
            domain: domain.clone(),
            lookups: report.lookups,
        });
        let all = report
            .all
            .map(spf::Qualifier::describe_all)
            .unwrap_or("no all (weak: neutral by default)");
        let plural = if report.lookups == 1 { "" } else { "s" };
        outcome
            .details
            .push(format!("SPF: {all}, {} lookup{plural}", report.lookups));
        if report.all == Some(spf::Qualifier::Pass) {
            outcome.fail_with(
                FailureKind::Dns,
                format!("SPF of {domain} allows every sender (+all)"),
            );
        }
        if report.lookups > spf::HARD_CAP {
            outcome.fail_with(
                FailureKind::Dns,
                format!(
                    "SPF of {domain} needs more than {} DNS lookups, the limit is {limit}",
                    spf::HARD_CAP
                ),
            );
        } else if report.lookups > limit {
            outcome.fail_with(
                FailureKind::Dns,
                format!(
                    "SPF of {domain} needs {} DNS lookups, the limit is {limit}",
                    report.lookups
                ),
            );
        }
    }

    async fn check_dmarc(&self, dns: &Dns, outcome: &mut Outcome) {
        let name = format!("_dmarc.{}", self.domain);
        let txt = match dns.txt_records(&name).await {
            Ok(txt) => txt,
            Err(e) => {
                outcome.fail_with(FailureKind::Dns, e);
                return;
            }
        };
        let text = match dmarc::select(&name, &txt) {
            Ok(Some(text)) => text,
            Ok(None) => {
                outcome.fail_with(FailureKind::Dns, format!("no DMARC record at {name}"));
                return;
            }
            Err(e) => {
                outcome.fail_with(FailureKind::Dns, e);
                return;
            }
        };
        let record = match dmarc::DmarcRecord::parse(text) {
            Ok(r) => r,
            Err(e) => {
                outcome.fail_with(
                    FailureKind::Dns,
                    format!("DMARC record at {name} is invalid: {e}"),
                );
                return;
            }
        };
        outcome
            .details
            .push(format!("DMARC: {}", record.describe()));
        if let Some(min) = self.spec.expect.dmarc_min_policy
            && record.policy < min
        {
            outcome.fail_with(
                FailureKind::Dns,
                format!(
                    "DMARC policy of {} is p={}, expected at least {min}",
                    self.domain, record.policy
                ),
            );
        }
    }
}

impl Probe for DnsProbe {
    fn hosts(&self) -> Vec<String> {
        vec![self.host.clone()]
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(self.attempt(ctx))
    }
}

fn list(ips: &[IpAddr]) -> String {
    let mut shown: Vec<String> = ips
        .iter()
        .take(MAX_LISTED)
        .map(ToString::to_string)
        .collect();
    if ips.len() > MAX_LISTED {
        shown.push(format!("and {} more", ips.len() - MAX_LISTED));
    }
    shown.join(", ")
}

/// A TXT value quoted and cut for a details line.
fn shorten(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() > MAX {
        format!("{:?}…", text.chars().take(MAX).collect::<String>())
    } else {
        format!("{text:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<DnsSpec, String> {
        serde_saphyr::from_str::<DnsSpec>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn summary_lists_what_is_checked() {
        let s =
            spec("domain: example.ru\nrecords: [a, mx, txt]\nexpect: {spf: true, dmarc: true}\n")
                .unwrap();
        assert_eq!(summary(&s), "example.ru A MX TXT +spf +dmarc");
        validate(&s).unwrap();
    }

    #[test]
    fn validation_explains_problems() {
        for (yaml, needle) in [
            (
                "domain: shop.test\nnameserver: dns.example\n",
                "invalid nameserver",
            ),
            ("domain: shop.test\nrecords: []\n", "nothing to check"),
            (
                "domain: shop.test\nrecords: [a, mx, a]\n",
                "`a` is listed twice",
            ),
            (
                "domain: shop.test\nexpect: {txt: spf}\n",
                "expect.txt needs `txt`",
            ),
            (
                "domain: shop.test\nexpect: {dmarc_min_policy: reject}\n",
                "needs `dmarc: true`",
            ),
            ("domain: 'shop..test'\n", "not a domain name"),
        ] {
            let err = validate(&spec(yaml).unwrap()).unwrap_err();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
        assert!(spec("domain: shop.test\nexpect: {spff: true}\n").is_err());
        assert!(spec("domain: shop.test\nrecords: [cname]\n").is_err());
    }

    #[test]
    fn nameserver_takes_an_optional_port() {
        let addr = nameserver_addr(&Text::literal("127.0.0.1:5353")).unwrap();
        assert_eq!(addr.port(), 5353);
        assert_eq!(nameserver_addr(&Text::literal("::1")).unwrap().port(), 53);
    }
}
