//! One SPF record parsed by the RFC 7208 grammar: directives, modifiers and their arguments.
//!
//! Apart from the walk in `spf` because it is pure text handling with no DNS: unknown mechanisms
//! are errors, unknown modifiers are ignored, domain-specs and macros are checked as the RFC
//! defines them.

use std::net::{Ipv4Addr, Ipv6Addr};

/// The prefix before a mechanism: what a match means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qualifier {
    /// `+` (the default).
    Pass,
    /// `-`.
    Fail,
    /// `~`.
    SoftFail,
    /// `?`.
    Neutral,
}

impl Qualifier {
    fn from_char(c: char) -> Option<Self> {
        match c {
            '+' => Some(Qualifier::Pass),
            '-' => Some(Qualifier::Fail),
            '~' => Some(Qualifier::SoftFail),
            '?' => Some(Qualifier::Neutral),
            _ => None,
        }
    }

    /// `+all`, `-all`, ... with a word on what it means for people reading details.
    pub fn describe_all(self) -> &'static str {
        match self {
            Qualifier::Fail => "-all",
            Qualifier::SoftFail => "~all (softfail)",
            Qualifier::Neutral => "?all (weak: neutral)",
            Qualifier::Pass => "+all (allows every sender)",
        }
    }
}

/// `/24//64` after `a` or `mx`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DualCidr {
    /// IPv4 prefix length.
    pub v4: Option<u8>,
    /// IPv6 prefix length.
    pub v6: Option<u8>,
}

/// A mechanism (RFC 7208 section 5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mechanism {
    /// `all`.
    All,
    /// `include:<domain>`.
    Include(String),
    /// `a[:<domain>][/cidr]`.
    A(Option<String>, DualCidr),
    /// `mx[:<domain>][/cidr]`.
    Mx(Option<String>, DualCidr),
    /// `ptr[:<domain>]` (deprecated by the RFC).
    Ptr(Option<String>),
    /// `ip4:<addr>[/len]`.
    Ip4(Ipv4Addr, u8),
    /// `ip6:<addr>[/len]`.
    Ip6(Ipv6Addr, u8),
    /// `exists:<domain>`.
    Exists(String),
}

impl Mechanism {
    /// Whether evaluating it queries DNS (counted against the limit of 10, section 4.6.4).
    fn queries_dns(&self) -> bool {
        matches!(
            self,
            Mechanism::Include(_)
                | Mechanism::A(..)
                | Mechanism::Mx(..)
                | Mechanism::Ptr(_)
                | Mechanism::Exists(_)
        )
    }
}

/// A qualified mechanism.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Directive {
    /// `+ - ~ ?`.
    pub qualifier: Qualifier,
    /// What is matched.
    pub mechanism: Mechanism,
}

/// A parsed SPF record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpfRecord {
    /// Directives in order.
    pub directives: Vec<Directive>,
    /// `redirect=` target.
    pub redirect: Option<String>,
    /// `exp=` target.
    pub exp: Option<String>,
}

/// Whether a TXT record claims to be SPF: `v=spf1` alone or followed by a space (section 4.5).
pub fn is_spf(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 6
        && bytes[..6].eq_ignore_ascii_case(b"v=spf1")
        && (bytes.len() == 6 || bytes[6] == b' ')
}

/// The SPF record among a domain's TXT records: `Ok(None)` without one, an error with several.
pub fn select<'a>(domain: &str, txt: &'a [String]) -> Result<Option<&'a str>, String> {
    let spf: Vec<&str> = txt
        .iter()
        .map(String::as_str)
        .filter(|t| is_spf(t))
        .collect();
    match spf.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(format!(
            "{domain} has {} SPF records, RFC 7208 allows one (permerror)",
            many.len()
        )),
    }
}

impl SpfRecord {
    /// Parses a record (`v=spf1 ...`).
    pub fn parse(text: &str) -> Result<Self, String> {
        // Terms are separated by spaces only (section 12); a tab makes a term unknown.
        let mut terms = text.split(' ').filter(|t| !t.is_empty());
        match terms.next() {
            Some(v) if v.eq_ignore_ascii_case("v=spf1") => {}
            _ => return Err("does not start with `v=spf1`".into()),
        }
        let mut record = SpfRecord::default();
        for term in terms {
            if let Some((name, value)) = modifier(term) {
                let slot = match name.to_ascii_lowercase().as_str() {
                    "redirect" => &mut record.redirect,
                    "exp" => &mut record.exp,
                    // Unknown modifiers must be ignored (section 6).
                    _ => continue,
                };
                if slot.is_some() {
                    return Err(format!("`{name}=` appears more than once"));
                }
                check_domain_spec(value).map_err(|e| format!("`{term}`: {e}"))?;
                *slot = Some(value.to_string());
                continue;
            }
            record.directives.push(directive(term)?);
        }
        Ok(record)
    }

    /// The qualifier of the `all` mechanism, if the record has one.
    pub fn all(&self) -> Option<Qualifier> {
        self.directives
            .iter()
            .find(|d| d.mechanism == Mechanism::All)
            .map(|d| d.qualifier)
    }

    /// Lookups this record needs by itself: its DNS mechanisms, and `redirect=` when it applies
    /// (a record with `all` never reaches its redirect, section 6.1).
    pub fn own_lookups(&self) -> u32 {
        let mechanisms = self
            .directives
            .iter()
            .filter(|d| d.mechanism.queries_dns())
            .count();
        let redirect = usize::from(self.redirect.is_some() && self.all().is_none());
        u32::try_from(mechanisms + redirect).unwrap_or(u32::MAX)
    }

    /// The redirect target that applies, if any.
    pub(super) fn effective_redirect(&self) -> Option<&str> {
        self.redirect.as_deref().filter(|_| self.all().is_none())
    }
}

/// `name=value` when `term` is a modifier: the name is `ALPHA *(ALPHA / DIGIT / - / _ / .)`.
fn modifier(term: &str) -> Option<(&str, &str)> {
    let (name, value) = term.split_once('=')?;
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (first_ok && rest_ok).then_some((name, value))
}

fn directive(term: &str) -> Result<Directive, String> {
    let (qualifier, body) = match term.chars().next().and_then(Qualifier::from_char) {
        Some(q) => (q, &term[1..]),
        None => (Qualifier::Pass, term),
    };
    let name_end = body.find([':', '/']).unwrap_or(body.len());
    let (name, rest) = body.split_at(name_end);
    let bad = |why: &str| format!("`{term}`: {why}");
    let mechanism = match name.to_ascii_lowercase().as_str() {
        "all" if rest.is_empty() => Mechanism::All,
        "all" => return Err(bad("`all` takes no argument")),
        "include" => Mechanism::Include(required_domain(rest).map_err(|e| bad(&e))?),
        "exists" => Mechanism::Exists(required_domain(rest).map_err(|e| bad(&e))?),
        "ptr" => {
            let domain = optional_domain(rest).map_err(|e| bad(&e))?;
            Mechanism::Ptr((!domain.is_empty()).then_some(domain))
        }
        "a" | "mx" => {
            let (domain_part, cidr_part) = split_cidr(rest);
            let domain = optional_domain(domain_part).map_err(|e| bad(&e))?;
            let domain = (!domain.is_empty()).then_some(domain);
            let cidr = dual_cidr(cidr_part).map_err(|e| bad(&e))?;
            if name.eq_ignore_ascii_case("a") {
                Mechanism::A(domain, cidr)
            } else {
                Mechanism::Mx(domain, cidr)
            }
        }
        "ip4" => {
            let value = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("expected `ip4:<address>`"))?;
            let (addr, len) = split_prefix(value, 32).map_err(|e| bad(&e))?;
            let addr = addr
                .parse::<Ipv4Addr>()
                .map_err(|_| bad(&format!("`{addr}` is not an IPv4 address")))?;
            Mechanism::Ip4(addr, len)
        }
        "ip6" => {
            let value = rest
                .strip_prefix(':')
                .ok_or_else(|| bad("expected `ip6:<address>`"))?;
            let (addr, len) = split_prefix(value, 128).map_err(|e| bad(&e))?;
            let addr = addr
                .parse::<Ipv6Addr>()
                .map_err(|_| bad(&format!("`{addr}` is not an IPv6 address")))?;
            Mechanism::Ip6(addr, len)
        }
        _ => return Err(format!("unknown mechanism `{term}`")),
    };
    Ok(Directive {
        qualifier,
        mechanism,
    })
}

/// `:<domain-spec>` that must be there.
fn required_domain(rest: &str) -> Result<String, String> {
    let domain = rest
        .strip_prefix(':')
        .ok_or_else(|| "expected `:<domain>`".to_string())?;
    check_domain_spec(domain)?;
    Ok(domain.to_string())
}

/// `[:<domain-spec>]`; empty when absent.
fn optional_domain(rest: &str) -> Result<String, String> {
    match rest.strip_prefix(':') {
        None if rest.is_empty() => Ok(String::new()),
        None => Err(format!("unexpected `{rest}`")),
        Some(domain) => {
            check_domain_spec(domain)?;
            Ok(domain.to_string())
        }
    }
}

/// Splits `:<domain>/<cidr>` at the first `/` outside a macro (`%{l/}` may hold one).
fn split_cidr(rest: &str) -> (&str, &str) {
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            '/' if depth == 0 => return rest.split_at(i),
            _ => {}
        }
    }
    (rest, "")
}

/// `/n4`, `//n6` or `/n4//n6` (section 5.6).
fn dual_cidr(s: &str) -> Result<DualCidr, String> {
    if s.is_empty() {
        return Ok(DualCidr::default());
    }
    let (v4, v6) = match s.strip_prefix("//") {
        Some(v6) => (None, Some(v6)),
        None => match s.strip_prefix('/') {
            Some(body) => match body.split_once("//") {
                Some((v4, v6)) => (Some(v4), Some(v6)),
                None => (Some(body), None),
            },
            None => return Err(format!("bad prefix length `{s}`")),
        },
    };
    Ok(DualCidr {
        v4: v4.map(|n| prefix_len(n, 32)).transpose()?,
        v6: v6.map(|n| prefix_len(n, 128)).transpose()?,
    })
}

fn split_prefix(value: &str, max: u8) -> Result<(&str, u8), String> {
    match value.split_once('/') {
        None => Ok((value, max)),
        Some((addr, len)) => Ok((addr, prefix_len(len, max)?)),
    }
}

fn prefix_len(s: &str, max: u8) -> Result<u8, String> {
    s.parse::<u8>()
        .ok()
        .filter(|n| *n <= max && (s == "0" || !s.starts_with('0')))
        .ok_or_else(|| format!("prefix length `{s}` is not 0 to {max}"))
}

/// A domain-spec (section 7.1): macros well-formed, and without macros a name whose last label
/// is a proper top-level label.
fn check_domain_spec(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Err("empty domain".into());
    }
    let mut chars = spec.chars().peekable();
    let mut has_macro = false;
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%' | '_' | '-') => {}
                Some('{') => {
                    has_macro = true;
                    let letter = chars.next();
                    if !letter.is_some_and(|l| "slodiphcrtv".contains(l.to_ascii_lowercase())) {
                        return Err(format!("bad macro in `{spec}`"));
                    }
                    while chars.peek().is_some_and(char::is_ascii_digit) {
                        chars.next();
                    }
                    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'r')) {
                        chars.next();
                    }
                    while chars.peek().is_some_and(|c| ".-+,/_=".contains(*c)) {
                        chars.next();
                    }
                    if chars.next() != Some('}') {
                        return Err(format!("unterminated macro in `{spec}`"));
                    }
                }
                _ => return Err(format!("`%` must start a macro in `{spec}`")),
            },
            c if c.is_ascii_graphic() => {}
            _ => return Err(format!("invalid character in `{spec}`")),
        }
    }
    if has_macro {
        return Ok(());
    }
    let name = spec.strip_suffix('.').unwrap_or(spec);
    let labels: Vec<&str> = name.split('.').collect();
    let top = labels.last().copied().unwrap_or_default();
    let top_ok = labels.len() >= 2
        && top.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && top.chars().any(|c| c.is_ascii_alphabetic())
        && !top.starts_with('-')
        && !top.ends_with('-');
    if labels.iter().any(|l| l.is_empty() || l.len() > 63) || !top_ok {
        return Err(format!("`{spec}` is not a domain name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<SpfRecord, String> {
        SpfRecord::parse(s)
    }

    #[test]
    fn parses_a_typical_record() {
        let r = parse("v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mail.example.com/28//64 include:_spf.example.net -all").unwrap();
        assert_eq!(r.directives.len(), 6);
        assert_eq!(
            r.directives[0].mechanism,
            Mechanism::Ip4(Ipv4Addr::new(192, 0, 2, 0), 24)
        );
        assert_eq!(
            r.directives[3].mechanism,
            Mechanism::Mx(
                Some("mail.example.com".into()),
                DualCidr {
                    v4: Some(28),
                    v6: Some(64)
                }
            )
        );
        assert_eq!(r.all(), Some(Qualifier::Fail));
        assert_eq!(r.own_lookups(), 3);
    }

    #[test]
    fn reads_qualifiers() {
        assert_eq!(
            parse("v=spf1 ~all").unwrap().all(),
            Some(Qualifier::SoftFail)
        );
        assert_eq!(
            parse("v=spf1 ?all").unwrap().all(),
            Some(Qualifier::Neutral)
        );
        assert_eq!(parse("v=spf1 +all").unwrap().all(), Some(Qualifier::Pass));
        assert_eq!(parse("v=spf1 all").unwrap().all(), Some(Qualifier::Pass));
        assert_eq!(parse("v=spf1 ip4:10.0.0.1").unwrap().all(), None);
        assert_eq!(parse("V=SPF1 -ALL").unwrap().all(), Some(Qualifier::Fail));
    }

    #[test]
    fn modifiers_count_and_repeat() {
        let r = parse("v=spf1 redirect=_spf.example.com exp=explain.example.com").unwrap();
        assert_eq!(r.redirect.as_deref(), Some("_spf.example.com"));
        assert_eq!(r.own_lookups(), 1);
        // With `all` present the redirect is never used.
        assert_eq!(
            parse("v=spf1 -all redirect=x.example.com")
                .unwrap()
                .own_lookups(),
            0
        );
        let err = parse("v=spf1 redirect=a.example redirect=b.example").unwrap_err();
        assert!(err.contains("more than once"), "{err}");
        // Unknown modifiers are ignored, per the RFC.
        assert!(parse("v=spf1 foo=bar -all").is_ok());
    }

    #[test]
    fn rejects_syntax_errors() {
        for (record, needle) in [
            ("v=spf1 foo -all", "unknown mechanism `foo`"),
            ("v=spf1 include -all", "expected `:<domain>`"),
            ("v=spf1 ip4:300.1.1.1", "not an IPv4 address"),
            ("v=spf1 ip4:10.0.0.0/33", "not 0 to 32"),
            ("v=spf1 ip6:zz::1", "not an IPv6 address"),
            ("v=spf1 a/129", "not 0 to 32"),
            ("v=spf1 all:foo", "takes no argument"),
            ("v=spf1 include:localhost", "not a domain name"),
            ("v=spf1 exists:%{z}.example.com", "bad macro"),
            ("v=spf10 -all", "v=spf1"),
            ("spf1 -all", "v=spf1"),
        ] {
            let err = parse(record).unwrap_err();
            assert!(err.contains(needle), "{record}: {err}");
        }
    }

    #[test]
    fn accepts_macros_and_ptr() {
        let r = parse("v=spf1 exists:%{i}._spf.%{d} ptr ptr:example.com -all").unwrap();
        assert_eq!(r.own_lookups(), 3);
        assert_eq!(r.directives[1].mechanism, Mechanism::Ptr(None));
    }

    #[test]
    fn duplicates_are_a_permerror() {
        let txt = vec![
            "v=spf1 -all".to_string(),
            "google-site-verification=x".to_string(),
            "v=spf1 ~all".to_string(),
        ];
        let err = select("two.example", &txt).unwrap_err();
        assert!(err.contains("has 2 SPF records"), "{err}");
        assert_eq!(select("x", &txt[1..2]).unwrap(), None);
        assert!(!is_spf("v=spf10"));
        assert!(is_spf("v=spf1"));
    }
}
