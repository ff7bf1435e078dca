//! Browser pool bench: what one minimal browser run costs, cold and warm, and how much memory
//! chromedriver and chromium take with one or four sessions at once.
//!
//! Run: `cargo bench --bench browser` (10 runs per timing), or `cargo bench --bench browser --
//! --runs 20`.
//!
//! A run is what the pool adds to every browser check: `Browser::session()`, open a loopback page,
//! read its title, `Session::close()`.
//! - cold: a new `Browser` per run, so starting chromedriver is included (and its process group
//!   killed when the `Browser` drops);
//! - warm: one `Browser`, chromedriver already running (the daemon's steady state).
//!
//! Memory: 8 runs started at once through `max_sessions` 1 and 4, each keeping its page open for
//! 500 ms (a short check's steps). A sampler thread sums `VmRSS` and `Pss` (from `smaps_rollup`)
//! over chromedriver's process group every 50 ms and keeps the peaks. RSS counts pages shared
//! between chromium's processes once per process, so it overstates; PSS splits them and is closer
//! to what the machine really gives. chromium's crash handlers leave the group and are not
//! counted (about 6 MB RSS per browser).

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use supportwatch::browser::{Browser, BrowserConfig};

type Res<T> = Result<T, String>;

fn main() {
    let mut runs = 10usize;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // cargo bench passes --bench; only --runs N is ours.
    if let Some(n) = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse::<usize>().ok())
    {
        runs = n.max(1);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("browser bench: no runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(bench(runs)) {
        eprintln!("browser bench: {e}");
        std::process::exit(1);
    }
}

async fn bench(runs: usize) -> Res<()> {
    let url = page_server().await?;
    println!("browser bench: {runs} runs per timing, page {url}");

    let mut cold = Vec::new();
    for _ in 0..runs {
        let browser = Browser::new(config(1));
        cold.push(one_run(&browser, &url, Duration::ZERO).await?);
        drop(browser);
    }

    let browser = Browser::new(config(1));
    one_run(&browser, &url, Duration::ZERO).await?; // starts the driver
    let mut warm = Vec::new();
    for _ in 0..runs {
        warm.push(one_run(&browser, &url, Duration::ZERO).await?);
    }
    drop(browser);

    println!();
    println!(
        "| mean over {runs} runs | total | session() | goto + title | close() | total min–max |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, phases) in [
        ("cold (chromedriver start included)", &cold),
        ("warm", &warm),
    ] {
        let ms = |f: fn(&Phases) -> Duration| {
            phases
                .iter()
                .map(|p| f(p).as_secs_f64() * 1000.0)
                .sum::<f64>()
                / phases.len() as f64
        };
        let totals: Vec<f64> = phases
            .iter()
            .map(|p| (p.open + p.page + p.close).as_secs_f64() * 1000.0)
            .collect();
        let min = totals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = totals.iter().copied().fold(0.0, f64::max);
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {min:.0}–{max:.0} ms |",
            ms(|p| p.open + p.page + p.close),
            ms(|p| p.open),
            ms(|p| p.page),
            ms(|p| p.close),
        );
    }

    println!();
    println!("| 8 runs, 500 ms each | wall | peak RSS sum | peak PSS sum | peak processes |");
    println!("|---|---|---|---|---|");
    for max_sessions in [1, 4] {
        let m = memory(&url, max_sessions).await?;
        println!(
            "| max_sessions {max_sessions} | {:.1} s | {} MB | {} MB | {} |",
            m.wall.as_secs_f64(),
            m.rss_kb / 1024,
            m.pss_kb / 1024,
            m.processes
        );
    }
    Ok(())
}

fn config(max_sessions: usize) -> BrowserConfig {
    BrowserConfig {
        max_sessions,
        ..BrowserConfig::default()
    }
}

/// Phases of one run.
#[derive(Default, Clone, Copy)]
struct Phases {
    open: Duration,
    page: Duration,
    close: Duration,
}

async fn one_run(browser: &Browser, url: &str, hold: Duration) -> Res<Phases> {
    let t0 = Instant::now();
    let session = browser.session().await.map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let result = async {
        session.client.goto(url).await.map_err(|e| e.to_string())?;
        let title = session.client.title().await.map_err(|e| e.to_string())?;
        if title != "Bench" {
            return Err(format!("unexpected title {title:?}"));
        }
        tokio::time::sleep(hold).await;
        Ok(())
    }
    .await;
    let t2 = Instant::now();
    session.close().await;
    let t3 = Instant::now();
    result.map(|()| Phases {
        open: t1 - t0,
        page: t2 - t1,
        close: t3 - t2,
    })
}

struct Memory {
    wall: Duration,
    rss_kb: u64,
    pss_kb: u64,
    processes: usize,
}

async fn memory(url: &str, max_sessions: usize) -> Res<Memory> {
    let browser = Arc::new(Browser::new(config(max_sessions)));
    one_run(&browser, url, Duration::ZERO).await?; // starts the driver
    let pgid = browser.driver_pid().await.ok_or("no local chromedriver")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        // A plain thread: sampling must not wait behind the runtime it measures.
        std::thread::spawn(move || {
            let mut peak = (0u64, 0u64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                let (rss, pss, n) = group_memory(pgid);
                peak = (peak.0.max(rss), peak.1.max(pss), peak.2.max(n));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let browser = browser.clone();
            let url = url.to_string();
            tokio::spawn(async move { one_run(&browser, &url, Duration::from_millis(500)).await })
        })
        .collect();
    let mut failure = None;
    for task in tasks {
        match task.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(e.to_string()),
        }
    }
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (rss_kb, pss_kb, processes) = sampler.join().map_err(|_| "sampler panicked")?;
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Memory {
        wall,
        rss_kb,
        pss_kb,
        processes,
    })
}

/// (VmRSS sum kB, Pss sum kB, processes) over process group `pgid`.
fn group_memory(pgid: u32) -> (u64, u64, usize) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return (0, 0, 0);
    };
    let mut total = (0, 0, 0);
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let group = stat[close + 1..]
            .split_whitespace()
            .nth(2)
            .and_then(|g| g.parse::<u32>().ok());
        if group != Some(pgid) {
            continue;
        }
        total.0 += kb_field(&format!("/proc/{pid}/status"), "VmRSS:");
        total.1 += kb_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
        total.2 += 1;
    }
    total
}

fn kb_field(path: &str, field: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(field))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

async fn page_server() -> Res<String> {
    let app = Router::new().route(
        "/",
        get(|| async { Html("<!doctype html><title>Bench</title><h1>Contact us</h1>") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}/"))
}
