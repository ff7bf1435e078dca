//! Concurrency limits: per endpoint (`host:port`), per kind, and global.
//!
//! The per-endpoint limit is keyed by host *and* port, so a hung service on one port of a shop
//! (say its chat API on :8443) holds only the permits of that port, never the checks of its web
//! site on :443. A `scheduler.hosts` entry written as `host:port` sets the limit of that one
//! endpoint; one written as a bare `host` sets the limit of each port of that host (each port
//! still separately, so the isolation holds), and `host:port` wins over `host`.

use crate::assemble::PreparedCheck;
use crate::config::{MAX_CONCURRENCY_LIMIT, SchedulerConfig};
use crate::value::Kind;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Concurrency limits: global, per kind and per endpoint.
pub struct Limits {
    pub(super) config: SchedulerConfig,
    global: Arc<Semaphore>,
    per_kind: HashMap<Kind, Arc<Semaphore>>,
    /// Keyed by endpoint: `host:port`, or the bare host when a probe knows no port.
    /// The key is kept shared too, so naming the limit that held a run allocates nothing.
    endpoints: Mutex<HashMap<String, NamedSemaphore>>,
}

/// A limit's key (`host:port` or `host`) and its semaphore.
type NamedSemaphore = (Arc<str>, Arc<Semaphore>);

/// Permits held by one run; released when dropped.
pub struct Permits(#[allow(dead_code)] Vec<OwnedSemaphorePermit>);

/// The limit a run was still waiting for when it gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldBy {
    /// The per-endpoint limit of `host:port` (`max_per_host`, or its `hosts:` entry).
    Endpoint {
        /// `host:port`.
        endpoint: Arc<str>,
        /// Its limit.
        limit: usize,
    },
    /// The check kind's `max_per_kind` limit.
    Kind {
        /// The kind.
        kind: Kind,
        /// Its limit.
        limit: usize,
    },
    /// `max_concurrent`.
    Global {
        /// Its limit.
        limit: usize,
    },
}

impl fmt::Display for HeldBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldBy::Endpoint { endpoint, limit } => {
                write!(
                    f,
                    "the per-endpoint limit of {endpoint} ({limit} at a time)"
                )
            }
            HeldBy::Kind { kind, limit } => {
                write!(f, "the limit of kind {kind} ({limit} at a time)")
            }
            HeldBy::Global { limit } => {
                write!(f, "the global limit max_concurrent ({limit} at a time)")
            }
        }
    }
}

/// A semaphore for a limit of `n` runs. Config load refuses limits outside
/// `1..=`[`MAX_CONCURRENCY_LIMIT`]; clamping here as well means no value that ever reaches the
/// scheduler can panic it (`Semaphore::new` panics past `Semaphore::MAX_PERMITS`) or leave a kind
/// that never runs (a limit of 0).
fn limit_semaphore(n: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(n.clamp(1, MAX_CONCURRENCY_LIMIT)))
}

/// The host part of an endpoint: `shop.test:443` → `shop.test`, `[::1]:53` → `[::1]`; an
/// endpoint without a port is its own host.
pub fn host_of(endpoint: &str) -> &str {
    match endpoint.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (host.starts_with('[') || !host.contains(':')) =>
        {
            host
        }
        _ => endpoint,
    }
}

impl Limits {
    /// Limits as configured.
    pub fn new(config: &SchedulerConfig) -> Self {
        Limits {
            config: config.clone(),
            global: limit_semaphore(config.max_concurrent),
            per_kind: config
                .max_per_kind
                .iter()
                .map(|(k, n)| (*k, limit_semaphore(*n)))
                .collect(),
            endpoints: Mutex::new(HashMap::new()),
        }
    }

    /// The limit of an endpoint: its `host:port` entry in `hosts:`, else its host's entry, else
    /// `max_per_host`.
    fn limit_of(&self, endpoint: &str) -> usize {
        let hosts = &self.config.hosts;
        hosts
            .get(endpoint)
            .or_else(|| hosts.get(host_of(endpoint)))
            .copied()
            .unwrap_or(self.config.max_per_host)
            .clamp(1, MAX_CONCURRENCY_LIMIT)
    }

    fn semaphore(&self, key: &str) -> NamedSemaphore {
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        // Known keys (every run but an endpoint's first) take no allocation.
        if let Some(known) = endpoints.get(key) {
            return known.clone();
        }
        let limit = self.limit_of(key);
        endpoints
            .entry(key.to_string())
            .or_insert_with(|| (Arc::from(key), limit_semaphore(limit)))
            .clone()
    }

    /// Every limit `check` is subject to, in the order they are taken: endpoints in sorted order
    /// (`PreparedCheck::hosts` is sorted: no deadlock between checks sharing several), then kind,
    /// then global — so runs queued behind a slow endpoint do not starve everyone of global
    /// permits.
    fn chain(&self, check: &PreparedCheck) -> Vec<(HeldBy, Arc<Semaphore>)> {
        let mut chain: Vec<(HeldBy, Arc<Semaphore>)> = Vec::with_capacity(check.hosts.len() + 2);
        for endpoint in &check.hosts {
            let limit = self.limit_of(endpoint);
            let (endpoint, semaphore) = self.semaphore(endpoint);
            chain.push((HeldBy::Endpoint { endpoint, limit }, semaphore));
        }
        let kind = check.check.kind();
        if let Some(semaphore) = self.per_kind.get(&kind) {
            let limit = self.config.max_per_kind.get(&kind).copied().unwrap_or(0);
            chain.push((HeldBy::Kind { kind, limit }, semaphore.clone()));
        }
        chain.push((
            HeldBy::Global {
                limit: self.config.max_concurrent,
            },
            self.global.clone(),
        ));
        chain
    }

    /// Waits for every permit `check` needs, however long that takes.
    pub async fn acquire(&self, check: &PreparedCheck) -> Permits {
        let chain = self.chain(check);
        let mut held = Vec::with_capacity(chain.len());
        for (_, semaphore) in chain {
            // A semaphore is never closed, so `Err` cannot happen; skipping it is harmless.
            if let Ok(p) = semaphore.acquire_owned().await {
                held.push(p);
            }
        }
        Permits(held)
    }

    /// Starts taking the permits of `check`, to be waited for in bounded steps
    /// ([`Acquisition::until`]).
    pub fn begin(&self, check: &PreparedCheck) -> Acquisition {
        let chain = self.chain(check);
        Acquisition {
            held: Vec::with_capacity(chain.len()),
            next: 0,
            chain,
        }
    }
}

/// Permits being taken, in order; those already taken are kept between waits.
pub struct Acquisition {
    chain: Vec<(HeldBy, Arc<Semaphore>)>,
    /// Index in `chain` of the next permit to take.
    next: usize,
    held: Vec<OwnedSemaphorePermit>,
}

impl Acquisition {
    /// Waits for the remaining permits until `deadline`; past it, says which limit is still
    /// held. The permits taken so far stay taken, so a later call resumes where this one stopped.
    pub async fn until(&mut self, deadline: Instant) -> Result<(), HeldBy> {
        while let Some((held_by, semaphore)) = self.chain.get(self.next) {
            match tokio::time::timeout_at(deadline, semaphore.clone().acquire_owned()).await {
                Ok(Ok(p)) => self.held.push(p),
                // Never closed (see `Limits::acquire`); nothing to wait for.
                Ok(Err(_)) => {}
                Err(_) => return Err(held_by.clone()),
            }
            self.next += 1;
        }
        Ok(())
    }

    /// The permits, once [`Self::until`] succeeded.
    pub fn into_permits(self) -> Permits {
        Permits(self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The prepared checks of `yaml` (http checks build no connection).
    fn checks(scheduler: &str, urls: &[&str]) -> (Limits, Vec<Arc<PreparedCheck>>) {
        let list: String = urls
            .iter()
            .enumerate()
            .map(|(i, url)| format!("  - {{ name: c{i}, kind: http, url: \"{url}\" }}\n"))
            .collect();
        let config = crate::config::load_sources(&[(
            "t.yaml".into(),
            format!("scheduler: {scheduler}\nchecks:\n{list}"),
        )])
        .expect("valid config");
        let prepared = crate::assemble::prepare(config).expect("builds");
        (Limits::new(&prepared.config.scheduler), prepared.checks)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(200)
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn endpoints_default_their_port_from_the_scheme() {
        let (_, checks) = checks("{}", &["https://shop.test/a", "http://shop.test:8080/"]);
        assert_eq!(checks[0].hosts, ["shop.test:443"]);
        assert_eq!(checks[1].hosts, ["shop.test:8080"]);
    }

    #[tokio::test]
    async fn another_port_of_a_busy_host_is_not_held() {
        let (limits, checks) = checks(
            "{ max_per_host: 1 }",
            &[
                "http://shop.test:1/",
                "http://shop.test:2/",
                "http://shop.test:1/x",
            ],
        );
        let _busy = limits.acquire(&checks[0]).await;
        // The other port goes at once; the same port waits for the per-endpoint limit.
        let mut other = limits.begin(&checks[1]);
        assert_eq!(other.until(later()).await, Ok(()));
        let mut same = limits.begin(&checks[2]);
        assert_eq!(
            same.until(soon()).await,
            Err(HeldBy::Endpoint {
                endpoint: "shop.test:1".into(),
                limit: 1
            })
        );
        assert_eq!(
            HeldBy::Endpoint {
                endpoint: "shop.test:1".into(),
                limit: 1
            }
            .to_string(),
            "the per-endpoint limit of shop.test:1 (1 at a time)"
        );
    }

    #[tokio::test]
    async fn a_bare_host_entry_sets_each_of_its_ports_limit_separately() {
        let (limits, checks) = checks(
            "{ max_per_host: 1, hosts: { shop.test: 2, \"shop.test:3\": 1 } }",
            &[
                "http://shop.test:1/a",
                "http://shop.test:1/b",
                "http://shop.test:1/c",
                "http://shop.test:2/",
                "http://shop.test:3/a",
                "http://shop.test:3/b",
            ],
        );
        // Port 1 takes 2 runs (the host's entry) and holds a third...
        let _a = limits.acquire(&checks[0]).await;
        let _b = limits.acquire(&checks[1]).await;
        let mut c = limits.begin(&checks[2]);
        assert_eq!(
            c.until(soon()).await,
            Err(HeldBy::Endpoint {
                endpoint: "shop.test:1".into(),
                limit: 2
            })
        );
        // ...while port 2 of the same host is not held by port 1's runs.
        let mut other_port = limits.begin(&checks[3]);
        assert_eq!(other_port.until(later()).await, Ok(()));
        // Port 3's own entry wins over the host's.
        let _a3 = limits.acquire(&checks[4]).await;
        let mut b3 = limits.begin(&checks[5]);
        assert!(matches!(
            b3.until(soon()).await,
            Err(HeldBy::Endpoint { limit: 1, .. })
        ));
    }

    #[tokio::test]
    async fn a_host_port_entry_sets_that_endpoints_limit() {
        let (limits, checks) = checks(
            "{ max_per_host: 1, hosts: { \"shop.test:1\": 2 } }",
            &[
                "http://shop.test:1/a",
                "http://shop.test:1/b",
                "http://shop.test:1/c",
                "http://shop.test:2/a",
                "http://shop.test:2/b",
            ],
        );
        let _a = limits.acquire(&checks[0]).await;
        let mut b = limits.begin(&checks[1]);
        assert_eq!(b.until(later()).await, Ok(()));
        let _b = b.into_permits();
        let mut c = limits.begin(&checks[2]);
        assert!(matches!(
            c.until(soon()).await,
            Err(HeldBy::Endpoint { limit: 2, .. })
        ));
        // Port 2 keeps the default of 1.
        let _a2 = limits.acquire(&checks[3]).await;
        let mut b2 = limits.begin(&checks[4]);
        assert!(matches!(
            b2.until(soon()).await,
            Err(HeldBy::Endpoint { limit: 1, .. })
        ));
    }

    #[tokio::test]
    async fn the_global_limit_is_named_when_it_holds_and_waiting_resumes() {
        let (limits, checks) = checks(
            "{ max_concurrent: 1 }",
            &["http://a.test/", "http://b.test/"],
        );
        let busy = limits.acquire(&checks[0]).await;
        let mut waiting = limits.begin(&checks[1]);
        assert_eq!(
            waiting.until(soon()).await,
            Err(HeldBy::Global { limit: 1 })
        );
        // Its endpoint permit was kept; once the global one frees, the wait completes.
        drop(busy);
        assert_eq!(waiting.until(later()).await, Ok(()));
        assert_eq!(waiting.into_permits().0.len(), 2);
    }

    #[test]
    fn hosts_keys_must_be_a_host_or_host_port_with_a_limit() {
        let errors = crate::config::load_sources(&[(
            "t.yaml".into(),
            "scheduler: { hosts: { \"https://shop.test/\": 2, \"shop.test:http\": 1, \"shop.test:0\": 1, \"a.test:443\": 0, b.test: 1, \"[::1]:53\": 1, \"c.test:8443\": 3 } }\n\
             checks: []\n"
                .to_string(),
        )])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        for bad in ["https://shop.test/", "shop.test:http", "shop.test:0"] {
            assert!(
                errors.contains(&format!(
                    "scheduler.hosts: `{bad}` is not a host or host:port (e.g. `shop.example.ru` \
                     for each of its ports, `shop.example.ru:443` for one endpoint)"
                )),
                "{bad}: {errors}"
            );
        }
        assert!(
            errors.contains("`scheduler.hosts.a.test:443` is 0; allowed 1 to 10000"),
            "{errors}"
        );
        for good in ["b.test", "[::1]:53", "c.test:8443"] {
            assert!(!errors.contains(&format!("`{good}`")), "{good}: {errors}");
        }
    }

    #[test]
    fn endpoints_bracket_ipv6_once() {
        use crate::net::endpoint;
        assert_eq!(endpoint("::1", Some(53)), "[::1]:53");
        assert_eq!(endpoint("[::1]", Some(80)), "[::1]:80");
        assert_eq!(endpoint("mail.test", Some(587)), "mail.test:587");
        assert_eq!(endpoint("shop.test", None), "shop.test");
        let url = url::Url::parse("wss://[::1]/chat").expect("url");
        assert_eq!(crate::net::url_endpoint(&url), "[::1]:443");
    }

    #[test]
    fn limits_clamp_values_the_semaphore_would_panic_on() {
        let config = SchedulerConfig {
            max_concurrent: usize::MAX,
            max_per_kind: [(Kind::Http, 0), (Kind::Tls, usize::MAX)].into(),
            max_per_host: usize::MAX,
            hosts: [("h".to_string(), usize::MAX), ("z".to_string(), 0)].into(),
            ..SchedulerConfig::default()
        };
        let limits = Limits::new(&config);
        assert_eq!(limits.global.available_permits(), MAX_CONCURRENCY_LIMIT);
        assert_eq!(limits.per_kind[&Kind::Http].available_permits(), 1);
        assert_eq!(
            limits.per_kind[&Kind::Tls].available_permits(),
            MAX_CONCURRENCY_LIMIT
        );
        assert_eq!(
            limits.semaphore("h").1.available_permits(),
            MAX_CONCURRENCY_LIMIT
        );
        assert_eq!(limits.semaphore("z").1.available_permits(), 1);
        assert_eq!(
            limits.semaphore("other").1.available_permits(),
            MAX_CONCURRENCY_LIMIT
        );
    }

    #[test]
    fn host_of_strips_only_a_port() {
        assert_eq!(host_of("shop.test:443"), "shop.test");
        assert_eq!(host_of("[::1]:53"), "[::1]");
        assert_eq!(host_of("shop.test"), "shop.test");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("127.0.0.1:8080"), "127.0.0.1");
    }
}
