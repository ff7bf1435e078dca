//! The built-in web server under attack, driving the real binary on 127.0.0.1: idle and
//! slow-header connections past the open-files limit, a flood of forged webhooks, reloads from
//! strangers and other sites, and TLS with basic auth.

mod common;

use common::binary::{Binary, WITHIN, metric_sum};
use common::daemon::ConfigDir;
use common::start_shop;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_supportwatch");

/// Sums the samples of `metric` whose labels contain every one of `labels` (0 when none).
fn sum(metrics: &str, metric: &str, labels: &[&str]) -> f64 {
    metric_sum(metrics, metric, labels).unwrap_or(0.0)
}

/// A config file with one passing check against `shop` (the daemon needs one to start).
async fn one_check(dir: &ConfigDir) -> common::TestShop {
    let shop = start_shop("127.0.0.1").await;
    dir.write(
        "shop.yaml",
        &format!(
            "checks:\n  - {{ name: home, kind: http, url: \"{}\", interval: 1m }}\n",
            shop.url("/ok")
        ),
    );
    shop
}

fn client() -> reqwest::Client {
    supportwatch::tlsconf::install_crypto_provider();
    // A new connection per request: a scrape must get in past the idle ones, not ride on a
    // connection opened before them.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> String {
    let answer = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("scrape: {e:?}"));
    assert_eq!(answer.status(), 200);
    answer.text().await.expect("metrics body")
}

/// Lets this test process hold more than a thousand sockets.
fn raise_own_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    limit.current = limit.maximum;
    let _ = setrlimit(Resource::Nofile, limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_past_the_fd_limit_starve_neither_scrapes_nor_checks() {
    raise_own_fd_limit();
    let shop = start_shop("127.0.0.1").await;
    let dir = ConfigDir::new();
    let checks: String = (0..3)
        .map(|i| {
            format!(
                "  - {{ name: home{i}, kind: http, url: \"{}\", interval: 1s, timeout: 1s, retries: 0 }}\n",
                shop.url("/ok")
            )
        })
        .collect();
    dir.write("shop.yaml", &format!("checks:\n{checks}"));
    let mut daemon = Binary::start_limited(dir.path(), &[], Some(1024));
    let addr = daemon.addr();
    let client = client();
    let runs = |metrics: &str, result: &str| {
        sum(
            metrics,
            "supportwatch_check_runs_total",
            &[&format!("result=\"{result}\"")],
        )
    };
    // Every check has run once.
    let started = Instant::now();
    let before = loop {
        let metrics = scrape(&client, addr).await;
        if runs(&metrics, "success") >= 3.0 {
            break metrics;
        }
        assert!(started.elapsed() < WITHIN, "checks never ran:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // More idle connections than the daemon has file descriptors, then a few that send their
    // request head a byte at a time and never finish it.
    let idle: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    assert!(idle.len() > 1000, "only {} connected", idle.len());
    let mut slow: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("slow connection");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .expect("head");
            s
        })
        .collect();
    let slow_started = Instant::now();

    // Scrapes keep answering while the slow heads trickle; the slow connections are closed.
    let mut slow_closed = vec![None; slow.len()];
    let mut last = String::new();
    while slow_closed.iter().any(Option::is_none) {
        assert!(
            slow_started.elapsed() < Duration::from_secs(60),
            "slow-header connections still open after 60 s"
        );
        last = scrape(&client, addr).await;
        for (i, s) in slow.iter_mut().enumerate() {
            if slow_closed[i].is_some() {
                continue;
            }
            // One more header byte: a server without a head deadline would wait forever.
            let wrote = s.write_all(b"X");
            s.set_read_timeout(Some(Duration::from_millis(10)))
                .expect("timeout");
            let mut buf = [0u8; 256];
            let closed = match s.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => true,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    wrote.is_err()
                }
                Err(_) => true,
            };
            if closed {
                slow_closed[i] = Some(slow_started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The checks ran on, all green, while the connections were held.
    let started = Instant::now();
    loop {
        if runs(&last, "success") >= runs(&before, "success") + 6.0 {
            break;
        }
        assert!(started.elapsed() < WITHIN, "checks stalled:\n{last}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = scrape(&client, addr).await;
    }
    for result in ["failure", "timeout"] {
        assert_eq!(runs(&last, result), 0.0, "{result} runs:\n{last}");
    }
    assert!(
        sum(
            &last,
            "supportwatch_http_server_connections_limited_total",
            &["reason=\"header_timeout\""]
        ) >= 3.0,
        "{last}"
    );
    assert!(
        sum(
            &last,
            "supportwatch_http_server_connections_limited_total",
            &["reason=\"evicted\""]
        ) >= 1.0,
        "{last}"
    );
    let open = sum(&last, "supportwatch_http_server_connections_open", &[]);
    assert!(
        open <= 256.0 + 32.0,
        "{open} connections open under a 1024 fd limit"
    );
    drop(idle);
    let log = daemon.lines().join("\n");
    assert!(!log.contains("Too many open files"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_do_not_block_signed_ones_and_are_logged_in_aggregate() {
    let dir = ConfigDir::new();
    let _shop = one_check(&dir).await;
    dir.write(
        "hooks.yaml",
        "server: { hooks_listen: \"127.0.0.1:0\" }\nhooks:\n  crm: { secret: \"${SW_HOOK_SECRET}\" }\n",
    );
    let mut daemon = Binary::start(dir.path(), &[("SW_HOOK_SECRET", "hook-secret")]);
    let addr = daemon.addr();
    let hooks: SocketAddr = daemon
        .logged("webhooks served on their own listener", "hooks_addr")
        .parse()
        .expect("hooks address");
    let client = client();
    let post = |addr: SocketAddr, signature: String, body: String| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://{addr}/hooks/crm"))
                .header("X-Signature", signature)
                .body(body)
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    // The main listener serves no hooks once they have their own.
    assert_eq!(post(addr, String::new(), String::new()).await, 404);

    let forged: Vec<_> = (0..400)
        .map(|i| {
            tokio::spawn(post(
                hooks,
                supportwatch::hooks::sign("guess", b"x"),
                format!("forged {i}"),
            ))
        })
        .collect();
    let mut signed = Vec::new();
    for i in 0..10 {
        let body = format!("{{\"token\": \"sw-callback-1795430400-{i:08x}\"}}");
        let signature = supportwatch::hooks::sign("hook-secret", body.as_bytes());
        signed.push(post(hooks, signature, body).await);
    }
    let mut forged_statuses = Vec::new();
    for f in forged {
        forged_statuses.push(f.await.expect("task"));
    }
    assert_eq!(signed, vec![200; 10]);
    assert!(
        forged_statuses.iter().all(|s| *s == 401),
        "{forged_statuses:?}"
    );
    let metrics = scrape(&client, addr).await;
    assert_eq!(
        sum(
            &metrics,
            "supportwatch_webhook_rejected_total",
            &["reason=\"bad_signature\""]
        ),
        400.0,
        "{metrics}"
    );
    assert_eq!(
        sum(
            &metrics,
            "supportwatch_webhook_rejected_total",
            &["reason=\"rate_limited\""]
        ),
        0.0
    );
    let refusal_lines: Vec<String> = daemon
        .lines()
        .into_iter()
        .filter(|l| l.contains("refused") && l.contains("webhook"))
        .collect();
    assert_eq!(refusal_lines.len(), 1, "{refusal_lines:#?}");
    assert!(
        refusal_lines[0].contains("\"count\":1"),
        "{}",
        refusal_lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_over_http_needs_the_lifecycle_switch_a_password_and_the_same_origin() {
    let client = client();
    // Off by default: refused, with the way to turn it on; SIGHUP still reloads.
    let plain = ConfigDir::new();
    let _shop = one_check(&plain).await;
    let mut daemon = Binary::start(plain.path(), &[]);
    let addr = daemon.addr();
    let answer = client
        .post(format!("http://{addr}/-/reload"))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 403);
    let text = answer.text().await.expect("body");
    assert!(
        text.contains("SIGHUP") && text.contains("enable_lifecycle"),
        "{text}"
    );
    assert!(common::daemon::signal(&daemon.child, "-HUP"));
    let started = Instant::now();
    while sum(
        &scrape(&client, addr).await,
        "supportwatch_config_reloads_total",
        &["result=\"success\""],
    ) < 1.0
    {
        assert!(started.elapsed() < WITHIN, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = daemon.child.kill();

    let enabled = ConfigDir::new();
    let _shop2 = one_check(&enabled).await;
    enabled.write(
        "server.yaml",
        &format!(
            "server:\n  enable_lifecycle: true\n  basic_auth_users: {{ ops: \"{}\" }}\n",
            bcrypt::hash("ops-pw", 4).expect("bcrypt")
        ),
    );
    let mut daemon = Binary::start(enabled.path(), &[]);
    let url = format!("http://{}/-/reload", daemon.addr());
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("post").status().as_u16()
    };
    assert_eq!(status(client.post(&url)).await, 401);
    assert_eq!(
        status(client.post(&url).basic_auth("ops", Some("wrong"))).await,
        401
    );
    // A page on another site posting with the operator's browser: refused even with the password.
    let authed = || client.post(&url).basic_auth("ops", Some("ops-pw"));
    assert_eq!(
        status(authed().header("Origin", "https://evil.example")).await,
        403
    );
    assert_eq!(
        status(authed().header("Content-Type", "application/x-www-form-urlencoded")).await,
        403
    );
    assert_eq!(
        status(authed().header("Sec-Fetch-Site", "cross-site")).await,
        403
    );
    let answer = authed().send().await.expect("post");
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .expect("body")
            .contains("config reloaded")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_basic_auth_protect_the_metrics() {
    supportwatch::tlsconf::install_crypto_provider();
    let dir = ConfigDir::new();
    let _shop = one_check(&dir).await;
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    std::fs::write(dir.path().join("cert.pem"), &cert_pem).expect("cert");
    std::fs::write(
        dir.path().join("key.pem"),
        certified.signing_key.serialize_pem(),
    )
    .expect("key");
    dir.write(
        "server.yaml",
        &format!(
            "server:\n  tls_server_config: {{ cert_file: \"{}\", key_file: \"{}\" }}\n  basic_auth_users: {{ prometheus: \"{}\" }}\n",
            dir.path().join("cert.pem").display(),
            dir.path().join("key.pem").display(),
            bcrypt::hash("scrape-pw", 4).expect("bcrypt")
        ),
    );
    let mut daemon = Binary::start(dir.path(), &[]);
    let addr = daemon.addr();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem")])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let url = format!("https://{addr}/metrics");
    let answer = client
        .get(&url)
        .basic_auth("prometheus", Some("scrape-pw"))
        .send()
        .await
        .expect("scrape over TLS");
    assert_eq!(answer.status(), 200);
    assert!(
        answer
            .text()
            .await
            .expect("body")
            .contains("supportwatch_build_info")
    );
    for _ in 0..3 {
        // The second and later scrapes use the remembered verification.
        let again = client
            .get(&url)
            .basic_auth("prometheus", Some("scrape-pw"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(again.status(), 200);
    }
    let wrong = client
        .get(&url)
        .basic_auth("prometheus", Some("scrape-pX"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(wrong.status(), 401);
    assert_eq!(client.get(&url).send().await.expect("scrape").status(), 401);
    // Plain HTTP on the TLS port gets no metrics.
    let plain = reqwest::Client::new()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await;
    assert!(plain.map_or(true, |a| a.status() != 200));
    // /healthz stays open for container health checks.
    let health = client
        .get(format!("https://{addr}/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
}

#[test]
fn validate_names_unusable_server_settings() {
    let dir = ConfigDir::new();
    dir.write(
        "shop.yaml",
        "checks:\n  - { name: home, kind: http, url: \"http://127.0.0.1:1/\" }\nserver:\n  enable_lifecycle: true\n  tls_server_config: { cert_file: missing.pem, key_file: missing.key }\n",
    );
    let text = validate_refuses(&dir);
    assert!(
        text.contains("server.enable_lifecycle needs server.basic_auth_users"),
        "{text}"
    );
    assert!(
        text.contains("server.tls_server_config: cannot read cert_file `missing.pem`"),
        "{text}"
    );

    dir.write(
        "shop.yaml",
        "checks:\n  - { name: home, kind: http, url: \"http://127.0.0.1:1/\" }\nserver:\n  basic_auth_users: { ops: \"plain-password\" }\n",
    );
    let text = validate_refuses(&dir);
    assert!(
        text.contains("the hash of user `ops` is not a bcrypt hash"),
        "{text}"
    );
}

/// Runs `validate` on `dir`, asserts it refuses the config, and returns what it said.
fn validate_refuses(dir: &ConfigDir) -> String {
    let out = std::process::Command::new(BIN)
        .args(["validate", "--config"])
        .arg(dir.path())
        .output()
        .expect("run validate");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    text
}

/// A CRM that can only set a URL: the secret in the last path segment proves the request, a wrong
/// one is refused, and the secret shows nowhere in the log, even at `debug`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_signed_hook_keeps_its_secret_out_of_the_log() {
    const SECRET: &str = "Pbx-url-secret-7f3a9c2e41d8";
    let dir = ConfigDir::new();
    let _shop = one_check(&dir).await;
    dir.write(
        "hooks.yaml",
        "hooks:\n  pbx: { secret: \"${SW_PBX_SECRET}\", signature: url }\n",
    );
    let mut daemon = Binary::start(
        dir.path(),
        &[("SW_PBX_SECRET", SECRET), ("RUST_LOG", "debug")],
    );
    let addr = daemon.addr();
    let client = client();
    let post = |path: String| {
        let client = client.clone();
        async move {
            client
                .post(format!("http://{addr}{path}"))
                .body("{\"token\": \"sw-callback-1795430400-0000abcd\"}")
                .send()
                .await
                .expect("post")
                .status()
                .as_u16()
        }
    };
    assert_eq!(post(format!("/hooks/pbx/{SECRET}")).await, 200);
    assert_eq!(
        post("/hooks/pbx/Pbx-url-secret-guessed-0000".into()).await,
        401
    );
    assert_eq!(post("/hooks/pbx".into()).await, 401);
    let metrics = scrape(&client, addr).await;
    assert_eq!(
        sum(
            &metrics,
            "supportwatch_webhook_rejected_total",
            &["reason=\"bad_signature\""]
        ),
        2.0,
        "{metrics}"
    );
    daemon.wait_for_line("refused", 0);
    let (code, log) = daemon.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("\"level\":\"DEBUG\""),
        "not a debug log:\n{log}"
    );
    assert!(!log.contains(SECRET), "the URL secret was logged:\n{log}");
}
