//! Scale bench: thousands of `http` checks on a 60 s interval against local servers.
//!
//! Run: `cargo bench --bench scale` (full set: http-1000, http-10000, https-10000, 60 s window),
//! `cargo bench --bench scale -- --quick` (20 s window, smaller N), or pick scenarios and window:
//! `cargo bench --bench scale -- http-10000 https-2000 --window 30 --interval 60`.
//! `--log` installs an `info` fmt subscriber writing to a sink, to include the daemon's per-run
//! log formatting in the CPU figure.
//!
//! Method. The binary plays three roles, chosen by environment variable:
//! - parent (no variable): starts the server process, runs each scenario in its own child process
//!   (so CPU time and peak RSS are per scenario), collects one `RESULT` line from each, prints a
//!   table;
//! - `SUPPORTWATCH_BENCH_SERVER=1`: a separate process (its CPU is not counted) serving `GET /`
//!   over HTTP and HTTPS on 127.0.0.2 … 127.0.0.33 (one port pair per address), with a throwaway CA
//!   whose PEM it writes for the checks' `ca_file`;
//! - `SUPPORTWATCH_BENCH_SCENARIO=http-10000`: loads N generated checks through
//!   `config::load_sources` → `assemble::prepare` → `Scheduler::apply`, exactly as the daemon does,
//!   spread round-robin over the 32 addresses (default per-host limit: one run at a time), waits a
//!   warm-up, then measures over one window: runs finished, utime+stime from `/proc/self/stat`,
//!   scheduler lag of every report (p50/p99/max), failures. RSS: `VmRSS` before loading, right after
//!   `apply` (idle, every check configured), and `VmHWM` (peak) at the end.
//!
//! Checks are spread over their interval by a hash of their name, so a window of one interval sees
//! every check run about once. Only loopback (127.0.0.0/8) is ever contacted.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use supportwatch::demo::pki::{Authority, Validity};

const SERVER_ENV: &str = "SUPPORTWATCH_BENCH_SERVER";
const SCENARIO_ENV: &str = "SUPPORTWATCH_BENCH_SCENARIO";
const HOSTS: u8 = 32; // 127.0.0.2 ..= 127.0.0.33

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if let Ok(dir) = std::env::var(SERVER_ENV) {
        server(Path::new(&dir))
    } else if let Ok(name) = std::env::var(SCENARIO_ENV) {
        scenario(&name)
    } else {
        parent(&args)
    };
    if let Err(e) = result {
        eprintln!("scale bench: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn env(name: &str) -> Res<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

// ---------------------------------------------------------------- parent

/// Kills the server process when the bench ends, however it ends.
struct ServerGuard(Child);

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parent(args: &[String]) -> Res<()> {
    let quick = args.iter().any(|a| a == "--quick");
    let mut window = if quick { 20 } else { 60 };
    let mut interval = 60;
    let mut log = false;
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" | "--bench" => {}
            "--log" => log = true,
            "--window" | "--interval" => {
                let v: u64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{a} needs a number of seconds"))?;
                if a == "--window" {
                    window = v
                } else {
                    interval = v
                }
            }
            s if s.starts_with("http") => names.push(s.to_string()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if names.is_empty() {
        let default: &[&str] = if quick {
            &["http-1000", "https-1000"]
        } else {
            &["http-1000", "http-10000", "https-10000"]
        };
        names = default.iter().map(|s| s.to_string()).collect();
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| format!("cannot create a tempdir: {e}"))?;
    let mut child = Command::new(&exe)
        .env(SERVER_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the server process: {e}"))?;
    let stdout = child.stdout.take().ok_or("server has no stdout")?;
    let _server = ServerGuard(child);
    let mut ready = String::new();
    BufReader::new(stdout)
        .read_line(&mut ready)
        .map_err(|e| format!("server did not start: {e}"))?;
    let mut http = String::new();
    let mut https = String::new();
    for field in ready.split_whitespace() {
        if let Some(v) = field.strip_prefix("http=") {
            http = v.to_string();
        } else if let Some(v) = field.strip_prefix("https=") {
            https = v.to_string();
        }
    }
    if http.is_empty() || https.is_empty() {
        return Err(format!("unexpected server ready line: {ready:?}"));
    }
    let tck = clock_ticks();
    println!(
        "scale bench: window {window} s (after 5 s warm-up), interval {interval} s, {HOSTS} hosts, \
         clock ticks {tck}/s, log {}",
        if log { "on (sink)" } else { "off" }
    );
    let mut rows = Vec::new();
    for name in &names {
        eprintln!("running {name} ...");
        let out = Command::new(&exe)
            .env(SCENARIO_ENV, name)
            .env("BENCH_HTTP", &http)
            .env("BENCH_HTTPS", &https)
            .env("BENCH_CA", dir.path().join("ca.pem"))
            .env("BENCH_WINDOW", window.to_string())
            .env("BENCH_INTERVAL", interval.to_string())
            .env("BENCH_LOG", if log { "1" } else { "0" })
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run scenario {name}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find(|l| l.starts_with("RESULT\t")) else {
            return Err(format!("scenario {name} failed ({}): {text}", out.status));
        };
        let kv: Vec<(String, String)> = line
            .split('\t')
            .skip(1)
            .filter_map(|f| f.split_once('=').map(|(k, v)| (k.into(), v.into())))
            .collect();
        rows.push(Row::new(name, kv, tck));
    }
    print_table(&rows);
    Ok(())
}

struct Row {
    name: String,
    kv: Vec<(String, String)>,
    tck: f64,
}

impl Row {
    fn new(name: &str, kv: Vec<(String, String)>, tck: f64) -> Self {
        Row {
            name: name.into(),
            kv,
            tck,
        }
    }
    fn s(&self, k: &str) -> &str {
        self.kv
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
    fn f(&self, k: &str) -> f64 {
        self.s(k).parse().unwrap_or(f64::NAN)
    }
    fn rate(&self) -> f64 {
        self.f("runs") / self.f("window_s")
    }
    fn cpu_ms_per_run(&self) -> f64 {
        self.f("cpu_ticks") / self.tck * 1e3 / self.f("runs")
    }
}

fn mb(kb: f64) -> f64 {
    kb / 1024.0
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<12} {:>7} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "scenario",
        "checks",
        "runs",
        "runs/s",
        "cpu ms/run",
        "cpu %",
        "rss base",
        "rss idle",
        "rss peak",
        "lag p50",
        "lag p99",
        "lag max",
        "fail"
    );
    for r in rows {
        println!(
            "{:<12} {:>7} {:>8} {:>8.1} {:>10.3} {:>8.1} {:>6.1}MB {:>6.1}MB {:>6.1}MB {:>6.1}ms {:>6.1}ms {:>6.1}ms {:>6}",
            r.name,
            r.s("checks"),
            r.s("runs"),
            r.rate(),
            r.cpu_ms_per_run(),
            r.f("cpu_ticks") / r.tck / r.f("window_s") * 100.0,
            mb(r.f("rss_base_kb")),
            mb(r.f("rss_idle_kb")),
            mb(r.f("rss_peak_kb")),
            r.f("lag_p50_ms"),
            r.f("lag_p99_ms"),
            r.f("lag_max_ms"),
            r.s("failures"),
        );
    }
    println!();
    for r in rows {
        println!(
            "{}: {:.1} runs/s, cpu {:.3} ms/run (user {:.0}% / sys {:.0}%), rss peak {:.1} MB \
             (idle {:.1} MB, peak after load {:.1} MB), lag p50 {:.1} ms \
             p99 {:.1} ms, run p50 {:.2} ms p99 {:.2} ms, failures {}{}{}",
            r.name,
            r.rate(),
            r.cpu_ms_per_run(),
            r.f("user_ticks") / r.f("cpu_ticks") * 100.0,
            r.f("sys_ticks") / r.f("cpu_ticks") * 100.0,
            mb(r.f("rss_peak_kb")),
            mb(r.f("rss_idle_kb")),
            mb(r.f("hwm_load_kb")),
            r.f("lag_p50_ms"),
            r.f("lag_p99_ms"),
            r.f("dur_p50_ms"),
            r.f("dur_p99_ms"),
            r.s("failures"),
            match r.s("missed") {
                "0" | "" => String::new(),
                m => format!(", {m} reports missed by the collector"),
            },
            match r.s("first_failure") {
                "" => String::new(),
                f => format!(" (first: {f})"),
            },
        );
    }
}

/// `getconf CLK_TCK` (libc is not a direct dependency); 100 if it cannot be asked.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

// ---------------------------------------------------------------- server process

fn server(dir: &Path) -> Res<()> {
    supportwatch::tlsconf::install_crypto_provider();
    let ips: Vec<String> = (0..HOSTS).map(|i| format!("127.0.0.{}", i + 2)).collect();
    let names: Vec<&str> = ips.iter().map(String::as_str).collect();
    let ca = Authority::new("supportwatch bench CA")?;
    let leaf = ca.issue(&names, Validity::days(90))?;
    let tls = leaf
        .server_config(&[])
        .map_err(|e| format!("server config: {e}"))?;
    std::fs::write(dir.join("ca.pem"), &ca.ca.cert_pem)
        .map_err(|e| format!("write ca.pem: {e}"))?;
    // Exit when the parent goes away (its end of our stdin closes), even if it was killed.
    std::thread::spawn(|| {
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
        std::process::exit(0);
    });
    let rt = tokio::runtime::Runtime::new().map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async move {
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "ok\n" }));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let (mut http, mut https) = (Vec::new(), Vec::new());
        for ip in &ips {
            for (tls, list) in [(None, &mut http), (Some(acceptor.clone()), &mut https)] {
                let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
                    .await
                    .map_err(|e| format!("bind {ip}: {e}"))?;
                list.push(
                    listener
                        .local_addr()
                        .map_err(|e| e.to_string())?
                        .to_string(),
                );
                tokio::spawn(serve(listener, tls, router.clone()));
            }
        }
        println!("READY http={} https={}", http.join(","), https.join(","));
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        std::future::pending::<Res<()>>().await
    })
}

/// Serves `router` on `listener`, over TLS when `tls` is given. TCP_NODELAY on every connection:
/// without it Nagle and delayed ACKs add ~40 ms to each TLS handshake (several small writes).
async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: axum::Router,
) {
    use hyper_util::rt::TokioIo;
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let _ = match tls {
                None => http.serve_connection(TokioIo::new(tcp), service).await,
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
                    Err(_) => return,
                },
            };
        });
    }
}

// ---------------------------------------------------------------- one scenario

fn scenario(name: &str) -> Res<()> {
    let (scheme, n) = name
        .split_once('-')
        .and_then(|(s, n)| Some((s, n.parse::<usize>().ok()?)))
        .filter(|(s, _)| *s == "http" || *s == "https")
        .ok_or_else(|| format!("scenario `{name}` is not http-N or https-N"))?;
    let targets = env(if scheme == "https" {
        "BENCH_HTTPS"
    } else {
        "BENCH_HTTP"
    })?;
    let targets: Vec<&str> = targets.split(',').collect();
    let ca = env("BENCH_CA")?;
    let window = Duration::from_secs(env("BENCH_WINDOW")?.parse().map_err(|_| "bad window")?);
    let interval: u64 = env("BENCH_INTERVAL")?.parse().map_err(|_| "bad interval")?;
    if env("BENCH_LOG")? == "1" {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let rss_base = proc_status_kb("VmRSS")?;

    let mut yaml = format!(
        "scheduler: {{ max_concurrent: 256 }}\n\
         defaults: {{ interval: {interval}s, timeout: 10s, retries: 0 }}\nchecks:\n"
    );
    for i in 0..n {
        let target = targets[i % targets.len()];
        yaml.push_str(&format!(
            "  - name: bench-{i}\n    kind: http\n    url: \"{scheme}://{target}/\"\n"
        ));
        if scheme == "https" {
            yaml.push_str(&format!("    ca_file: \"{ca}\"\n"));
        }
    }
    let config = supportwatch::config::load_sources(&[(PathBuf::from("bench.yaml"), yaml)])
        .map_err(|e| e.to_string())?;
    let prepared = supportwatch::assemble::prepare(config).map_err(|e| e.to_string())?;

    rt.block_on(async move {
        let metrics = Arc::new(supportwatch::metrics::Metrics::new());
        let scheduler = supportwatch::schedule::Scheduler::new(metrics);
        let mut reports = scheduler.subscribe();
        scheduler.apply(&prepared);
        drop(prepared);
        let rss_idle = proc_status_kb("VmRSS")?;
        let hwm_load = proc_status_kb("VmHWM")?;

        let warmup_end = Instant::now() + Duration::from_secs(5);
        let (mut window_start, mut cpu_start) = (None, (0, 0));
        let (mut lags, mut durs) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut failures, mut missed, mut first_failure) = (0u64, 0u64, String::new());
        let mut end = None;
        loop {
            let deadline = end.unwrap_or(warmup_end);
            let received = tokio::select! {
                r = reports.recv() => r,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if end.is_some() { break; }
                    window_start = Some(Instant::now());
                    cpu_start = cpu_ticks()?;
                    end = Some(Instant::now() + window);
                    continue;
                }
            };
            let report = match received {
                Ok(r) => r,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                    missed += k * u64::from(window_start.is_some());
                    continue;
                }
                Err(e) => return Err(format!("report stream ended: {e}")),
            };
            if window_start.is_none() {
                continue;
            }
            lags.push(report.lag.unwrap_or_default());
            durs.push(report.duration);
            if !report.result.passed() {
                failures += 1;
                if first_failure.is_empty() {
                    first_failure = report
                        .failure
                        .as_ref()
                        .map(|f| format!("{}: {}", report.check, f.message.replace('\t', " ")))
                        .unwrap_or_else(|| "unknown".into());
                }
            }
        }
        let (user_end, sys_end) = cpu_ticks()?;
        let (user, sys) = (user_end - cpu_start.0, sys_end - cpu_start.1);
        let cpu = user + sys;
        let elapsed = window_start.map(|s| s.elapsed()).unwrap_or(window);
        let rss_peak = proc_status_kb("VmHWM")?;
        let (lag, dur) = (percentiles(&mut lags), percentiles(&mut durs));
        println!(
            "RESULT\tchecks={n}\truns={}\twindow_s={:.3}\tcpu_ticks={cpu}\trss_base_kb={rss_base}\t\
             rss_idle_kb={rss_idle}\thwm_load_kb={hwm_load}\tuser_ticks={user}\tsys_ticks={sys}\trss_peak_kb={rss_peak}\tlag_p50_ms={:.3}\tlag_p99_ms={:.3}\t\
             lag_max_ms={:.3}\tdur_p50_ms={:.3}\tdur_p99_ms={:.3}\tfailures={failures}\t\
             missed={missed}\tfirst_failure={first_failure}",
            lags.len(),
            elapsed.as_secs_f64(),
            lag.0,
            lag.1,
            lag.2,
            dur.0,
            dur.1,
        );
        scheduler.shutdown(Duration::from_secs(1)).await;
        Ok(())
    })
}

/// p50, p99 and max, in milliseconds.
fn percentiles(values: &mut [Duration]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    (at(0.5), at(0.99), at(1.0))
}

/// (utime, stime) of this process, in clock ticks.
fn cpu_ticks() -> Res<(u64, u64)> {
    let stat =
        std::fs::read_to_string("/proc/self/stat").map_err(|e| format!("/proc/self/stat: {e}"))?;
    // Fields after the `(comm)`: state is field 3, utime 14, stime 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("bad /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> Res<u64> {
        fields
            .get(i - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "bad /proc/self/stat".into())
    };
    Ok((field(14)?, field(15)?))
}

/// A `kB` line of `/proc/self/status` (`VmRSS`, `VmHWM`).
fn proc_status_kb(key: &str) -> Res<u64> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/self/status"))
}
