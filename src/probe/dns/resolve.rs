//! The resolver side of `dns` checks: queries that tell NXDOMAIN from "exists, but no such
//! records", always for absolute names, and TXT strings joined as SPF and DMARC read them.

use super::spf;
use futures::future::BoxFuture;
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::IpAddr;

/// One attempt's resolver.
pub(super) struct Dns {
    pub(super) resolver: TokioResolver,
}

pub(super) enum Answer {
    /// The name does not exist.
    NxDomain,
    /// Records of the asked type; empty when the name exists without them.
    Records(Vec<RData>),
}

impl Dns {
    pub(super) async fn query(&self, name: &str, rtype: RecordType) -> Result<Answer, String> {
        let mut fqdn =
            Name::from_utf8(name).map_err(|e| format!("`{name}` is not a domain name: {e}"))?;
        // Absolute: the search list of resolv.conf must not turn `shop.test` into another name.
        fqdn.set_fqdn(true);
        match self.resolver.lookup(fqdn, rtype).await {
            Ok(lookup) => Ok(Answer::Records(
                lookup
                    .answers()
                    .iter()
                    .filter(|r| r.data.record_type() == rtype)
                    .map(|r| r.data.clone())
                    .collect(),
            )),
            Err(e) if e.is_nx_domain() => Ok(Answer::NxDomain),
            Err(e) if e.is_no_records_found() => Ok(Answer::Records(Vec::new())),
            Err(e) => Err(format!("{rtype} query for {name} failed: {e}")),
        }
    }

    /// A addresses of `host`, or AAAA when it has no A.
    pub(super) async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        for rtype in [RecordType::A, RecordType::AAAA] {
            if let Answer::Records(records) = self.query(host, rtype).await? {
                let ips: Vec<IpAddr> = records.iter().filter_map(ip_of).collect();
                if !ips.is_empty() {
                    return Ok(ips);
                }
            } else {
                // NXDOMAIN: no AAAA either.
                break;
            }
        }
        Ok(Vec::new())
    }

    pub(super) async fn txt_records(&self, name: &str) -> Result<Vec<String>, String> {
        Ok(match self.query(name, RecordType::TXT).await? {
            Answer::NxDomain => Vec::new(),
            Answer::Records(records) => records.iter().filter_map(txt_of).collect(),
        })
    }
}

impl spf::TxtSource for Dns {
    fn txt<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<String>, String>> {
        Box::pin(self.txt_records(name))
    }
}

pub(super) fn ip_of(r: &RData) -> Option<IpAddr> {
    match r {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// A TXT record's strings joined, as SPF and DMARC read them (RFC 7208 section 3.3).
pub(super) fn txt_of(r: &RData) -> Option<String> {
    match r {
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|part| String::from_utf8_lossy(part))
                .collect(),
        ),
        _ => None,
    }
}
