//! The `supportwatch` command line: the only place where errors become exit codes (`anyhow`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use supportwatch::config::ServerConfig;
use supportwatch::daemon::{ConfigSource, Daemon};
use supportwatch::deliver::Target;
use supportwatch::demo::Break;
use supportwatch::fleet::{Placement, Shard};
use supportwatch::hooks::Hooks;
use supportwatch::server::{self, WebOptions};
use supportwatch::value::redact::{self, RedactingWriter};
use supportwatch::{report, runner, schedule};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "supportwatch",
    version,
    about = "Proves, around the clock, that an online shop's support channels really work"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Text,
    Html,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: checks on their schedules, /metrics, /healthz, /-/reload.
    Run {
        /// Directory with the *.yaml config files.
        #[arg(long, short, default_value = "checks")]
        config: PathBuf,
        /// Listen address, overriding server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Run only shard I of N (0-based): the checks whose name hashes to I. `auto/N` takes I
        /// from the ordinal of a StatefulSet pod name (`supportwatch-2`) in POD_NAME or HOSTNAME.
        #[arg(long, env = "SUPPORTWATCH_SHARD", value_name = "I/N")]
        shard: Option<String>,
        /// This instance's location: a `location` label on every series and alert; checks with
        /// `locations:` that leave it out are skipped.
        #[arg(long, env = "SUPPORTWATCH_LOCATION", value_name = "NAME")]
        location: Option<String>,
    },
    /// Run checks once now and print every phase; exit 0 only if all passed.
    Check {
        /// Names of the checks to run.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// Run every check.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Print the reports as JSON.
        #[arg(long)]
        json: bool,
        /// Directory with the *.yaml config files.
        #[arg(long, short, default_value = "checks")]
        config: PathBuf,
        /// Where to receive webhook deliveries (`/hooks/NAME`) while checks wait for them,
        /// overriding server.hooks_listen and server.listen.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Check the config as the daemon would at start, and report every problem.
    Validate {
        /// Directory with the *.yaml config files.
        #[arg(long, short, default_value = "checks")]
        config: PathBuf,
    },
    /// Send a test message through a notifier, to confirm the wiring.
    NotifyTest {
        /// The notifier's name under `notifiers:`.
        notifier: String,
        /// The shop named in the message (default: the first check's).
        #[arg(long)]
        shop: Option<String>,
        /// Directory with the *.yaml config files.
        #[arg(long, short, default_value = "checks")]
        config: PathBuf,
    },
    /// List the configured checks.
    List {
        /// Directory with the *.yaml config files.
        #[arg(long, short, default_value = "checks")]
        config: PathBuf,
        /// List only the checks `run --shard I/N` runs (`auto/N` as for `run`).
        #[arg(long, value_name = "I/N", conflicts_with = "shards")]
        shard: Option<String>,
        /// Add a column with the shard (of N) that runs each check.
        #[arg(long, value_name = "N")]
        shards: Option<u32>,
        /// List only the checks `run --location NAME` runs.
        #[arg(long, value_name = "NAME")]
        location: Option<String>,
    },
    /// Print a shop's channels over a range from the run history: uptime, runs, failures,
    /// median and p95 latency, traffic, incidents. Reads the database while the daemon runs.
    Report {
        /// The shop label.
        #[arg(long)]
        shop: String,
        /// How far back, e.g. `7d`, `24h`, `30d`.
        #[arg(long, default_value = "7d")]
        since: String,
        /// `text` for people, `html` as the weekly digest e-mail, `json` for scripts (shape in
        /// the README).
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Directory with the *.yaml config files (for storage.path and the shop's time zone).
        #[arg(long, short, default_value = "checks")]
        config: PathBuf,
    },
    /// Start a local demo shop and check it, with /metrics on --listen.
    Demo {
        /// Listen address for /metrics.
        #[arg(long, default_value = "127.0.0.1:9750")]
        listen: SocketAddr,
        /// Make a channel fail on purpose: website, feedback_form, email, callback (the request
        /// is dropped), callback-call (the webhook arrives, the call never comes), chat, phone
        /// (the hotline answers and plays silence).
        #[arg(long = "break", value_name = "CHANNEL")]
        breaks: Vec<String>,
        /// Repair the broken channels after this long, so the alert is seen to resolve
        /// (`never` keeps them broken).
        #[arg(long, value_name = "DURATION", default_value = "60s")]
        heal_after: String,
        /// Send the weekly digest to the owner's (stand-in) Telegram once the first checks
        /// have run, instead of waiting for Monday.
        #[arg(long)]
        digest_now: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints one line per run on stdout; its log would only repeat them.
    let default_level = match cli.command {
        Command::Demo { .. } | Command::Check { .. } => "warn",
        _ => "info",
    };
    init_logging(cli.log_format, default_level);
    supportwatch::tlsconf::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            let message = redact::scrub_installed(&format!("{e:#}"));
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// `--shard` and `--location` checked: a value that cannot be used stops the command (exit 2).
fn placement(shard: Option<&str>, location: Option<String>) -> anyhow::Result<Placement> {
    let shard = shard
        .map(|text| Shard::parse(text, |var| std::env::var(var).ok()))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--shard (or SUPPORTWATCH_SHARD) {e}"))?;
    if let Some(location) = &location {
        supportwatch::fleet::validate_location(location)
            .map_err(|e| anyhow::anyhow!("--location (or SUPPORTWATCH_LOCATION): {e}"))?;
    }
    Ok(Placement { shard, location })
}

/// `supportwatch list`: one line per check; with `--shard`/`--location` only the checks that
/// instance runs, with `--shards N` the shard of each.
fn list(
    config: PathBuf,
    shard: Option<&str>,
    shards: Option<u32>,
    location: Option<String>,
) -> anyhow::Result<ExitCode> {
    if let Some(n) = shards
        && !(1..=supportwatch::fleet::MAX_SHARDS).contains(&n)
    {
        anyhow::bail!(
            "--shards {n}: the number of shards must be between 1 and {}",
            supportwatch::fleet::MAX_SHARDS
        );
    }
    let placement = placement(shard, location)?;
    let prepared = ConfigSource::Dir(config).load()?;
    // A column only when some check has `locations:`, the same width on every line.
    let located = prepared.checks.iter().any(|c| c.check.locations.is_some());
    let rows: Vec<Vec<String>> = prepared
        .checks
        .iter()
        .filter(|c| placement.owns(&c.check))
        .map(|c| {
            let c = &c.check;
            let mut row = vec![
                c.name.to_string(),
                c.kind().as_str().to_string(),
                c.channel.as_str().to_string(),
                format!("every {}", c.interval),
                format!("shop={}", c.shop()),
            ];
            if let Some(n) = shards {
                row.push(format!(
                    "shard={}/{n}",
                    supportwatch::fleet::shard_of(&c.name, n)
                ));
            }
            if located {
                row.push(match &c.locations {
                    Some(locations) => format!("locations={}", locations.join(",")),
                    None => "locations=any".to_string(),
                });
            }
            row.push(c.spec.summary());
            row
        })
        .collect();
    print!("{}", supportwatch::report::table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// `supportwatch report`: the shop's figures from the database the config names, opened read-only.
fn report(
    shop: &str,
    since: &str,
    format: ReportFormat,
    config: PathBuf,
) -> anyhow::Result<ExitCode> {
    use supportwatch::alert::history::{History, report};
    let since = humantime::parse_duration(since)
        .map_err(|e| anyhow::anyhow!("--since {since}: {e} (write e.g. `7d` or `24h`)"))?;
    let prepared = ConfigSource::Dir(config).load()?;
    let path = prepared.config.storage.path();
    if !path.exists() {
        anyhow::bail!(
            "storage {}: no database there yet; it is written by `supportwatch run`",
            path.display()
        );
    }
    let zone = supportwatch::alert::shop_zone(&prepared.config.alerting, shop);
    let store = supportwatch::alert::store::Store::open_read_only(&path)?;
    let history = History::new(&store, std::time::SystemTime::now());
    let mut built = report::build(&history, shop, since, &zone)?;
    let targets = prepared
        .config
        .digest
        .as_ref()
        .map(|d| d.targets.clone())
        .unwrap_or_default();
    supportwatch::alert::digest::content::apply_targets(&mut built, &targets);
    let known = prepared.checks.iter().any(|c| c.check.shop() == shop);
    if !known && built.channels.is_empty() {
        let mut shops: Vec<&str> = prepared.checks.iter().map(|c| c.check.shop()).collect();
        shops.sort_unstable();
        shops.dedup();
        anyhow::bail!(
            "no shop `{shop}` in the config or the history (configured: {})",
            shops.join(", ")
        );
    }
    match format {
        ReportFormat::Text => print!("{}", report::text(&built)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&built)?),
        ReportFormat::Html => {
            // The digest's HTML; certificates and mailboxes come from a running daemon's
            // metrics, which a report read from the database does not have.
            let language = prepared.config.alerting.language.unwrap_or_default();
            let period = jiff::Timestamp::try_from(history.now())
                .map(|t| t.as_second())
                .unwrap_or_default();
            let digest = supportwatch::alert::digest::content::compose(
                language,
                period,
                &built,
                &targets,
                &Default::default(),
                &zone,
            );
            print!("{}", digest.html);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour codes only for a person at a terminal: in a log file or journald they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Every log line passes the redactor of the config in force: servers echo secrets into
        // the errors that get logged.
        .with_writer(|| RedactingWriter(std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run {
            config,
            listen,
            shard,
            location,
        } => {
            let placement = placement(shard.as_deref(), location)?;
            let daemon = Daemon::start_placed(ConfigSource::Dir(config), listen, placement).await?;
            daemon.run_until_signal().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { config } => {
            let prepared = match ConfigSource::Dir(config.clone()).load() {
                Ok(p) => p,
                Err(errors) => {
                    eprintln!("{errors}");
                    // 2 like every other command's config error (README, "Command line").
                    return Ok(ExitCode::from(2));
                }
            };
            let plural = |n: usize, one: &str, many: &str| {
                format!("{n} {}", if n == 1 { one } else { many })
            };
            for warning in &prepared.warnings {
                println!("warning: {warning}");
            }
            println!(
                "{}: {} and {} in {}, all valid{}",
                config.display(),
                plural(prepared.checks.len(), "check", "checks"),
                plural(prepared.notifiers.len(), "notifier", "notifiers"),
                plural(prepared.config.files.len(), "file", "files"),
                if prepared.warnings.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", {}",
                        plural(prepared.warnings.len(), "warning", "warnings")
                    )
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            shop,
            since,
            format,
            config,
        } => report(&shop, &since, format, config),
        Command::List {
            config,
            shard,
            shards,
            location,
        } => list(config, shard.as_deref(), shards, location),
        Command::Check {
            names,
            all,
            json,
            config,
            listen,
        } => check(config, names, all, json, listen).await,
        Command::Demo {
            listen,
            breaks,
            heal_after,
            digest_now,
        } => demo(listen, breaks, heal_after, digest_now).await,
        Command::NotifyTest {
            notifier,
            shop,
            config,
        } => {
            let prepared = ConfigSource::Dir(config).load()?;
            let shop = shop.unwrap_or_else(|| {
                prepared
                    .checks
                    .first()
                    .map(|c| c.check.shop().to_string())
                    .unwrap_or_else(|| supportwatch::outcome::DEFAULT_SHOP.to_string())
            });
            let setup = prepared.alert_setup();
            match supportwatch::alert::service::send_test(&setup, &notifier, &shop).await {
                Ok(()) => {
                    println!("sent a test message through `{notifier}` for shop `{shop}`");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    // A mail server may quote the credentials it refused.
                    eprintln!("error: {}", redact::scrub_installed(&e.to_string()));
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

async fn check(
    config: PathBuf,
    names: Vec<String>,
    all: bool,
    json: bool,
    listen: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    // One registry for the checks and the receiver below, as in the daemon.
    let hooks = Arc::new(Hooks::default());
    let prepared = ConfigSource::Dir(config).load_with(hooks.clone())?;
    hooks.configure(&prepared.config.hooks);
    let selected: Vec<_> = if all {
        prepared.checks.clone()
    } else {
        let mut picked = Vec::new();
        for name in &names {
            let found = prepared
                .checks
                .iter()
                .find(|c| c.check.name == *name)
                .with_context(|| {
                    let known: Vec<&str> = prepared
                        .checks
                        .iter()
                        .map(|c| c.check.name.as_str())
                        .collect();
                    format!("no check named `{name}` (known: {})", known.join(", "))
                })?;
            picked.push(found.clone());
        }
        picked
    };
    // Bound before any check submits anything: a port that is taken fails the command at once,
    // instead of every webhook check waiting out its deadline.
    let receiver = if selected.iter().any(|c| waits_for_webhook(&c.check)) {
        Some(HookReceiver::start(&prepared.config.server, listen, hooks).await?)
    } else {
        None
    };
    // The same limits as the daemon: `check --all` must not burst a shop either.
    let limits = Arc::new(schedule::Limits::new(&prepared.config.scheduler));
    let runs = selected.iter().enumerate().map(|(i, c)| {
        let limits = limits.clone();
        let c = c.clone();
        async move {
            let _permits = limits.acquire(&c).await;
            runner::execute(&c, i as u64 + 1, None).await
        }
    });
    let reports = futures::future::join_all(runs).await;
    if let Some(receiver) = receiver {
        receiver.stop().await;
    }
    let all_passed = reports.iter().all(|r| r.result.passed());
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for r in &reports {
            println!("{}", report::detail(r));
        }
        let passed = reports.iter().filter(|r| r.result.passed()).count();
        println!("{passed} passed, {} failed", reports.len() - passed);
    }
    Ok(if all_passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether a run of `check` waits for a `deliver: { webhook: … }`.
fn waits_for_webhook(check: &supportwatch::config::Check) -> bool {
    let (deliver, _) = check.spec.deliveries();
    deliver.is_some_and(|d| matches!(d.target(), Ok(Target::Webhook(_))))
}

/// `/hooks/` served while `check` waits for webhook deliveries; nothing else is served.
struct HookReceiver {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HookReceiver {
    /// Binds `listen`, else `server.hooks_listen`, else `server.listen` (where the daemon would
    /// receive the shop's webhooks, so the shop posts there), and starts serving.
    async fn start(
        server: &ServerConfig,
        listen: Option<SocketAddr>,
        hooks: Arc<Hooks>,
    ) -> anyhow::Result<Self> {
        let addr = listen.or(server.hooks_listen).unwrap_or(server.listen);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot serve /hooks/ on {addr} for the webhook deliveries the checks wait for: \
                 {e} (is `supportwatch run` listening there?); pass --listen ADDR to receive them \
                 on another address, one the shop's system can post to"
            )
        })?;
        let addr = listener.local_addr().unwrap_or(addr);
        // TLS and connection limits as the daemon's; basic auth never applies to /hooks/.
        let options = WebOptions::from_config(server, server::conn::raise_fd_limit())?;
        let (reload, _) = tokio::sync::mpsc::channel(1);
        let state = server::AppState {
            metrics: Arc::new(supportwatch::metrics::Metrics::new()),
            // The hooks router has no reload route; the closed channel is never used.
            reload,
            hooks,
            alert_health: None,
            status: None,
        };
        let stop = CancellationToken::new();
        // The receiver runs beside the checks and ends when `stop` is cancelled after them.
        let task = tokio::spawn(server::serve_hooks(listener, state, options, stop.clone()));
        eprintln!("serving /hooks/ on {addr} while waiting for webhook deliveries");
        Ok(HookReceiver { stop, task })
    }

    /// Stops accepting; a request in flight gets a moment to finish.
    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

async fn demo(
    listen: SocketAddr,
    breaks: Vec<String>,
    heal_after: String,
    digest_now: bool,
) -> anyhow::Result<ExitCode> {
    let heal_after = match heal_after.as_str() {
        "never" => None,
        text => Some(
            supportwatch::value::parse_duration(text)
                .map_err(|e| anyhow::anyhow!("--heal-after {text}: {e}"))?,
        ),
    };
    let mut broken = BTreeSet::new();
    for b in &breaks {
        let Some(one) = Break::parse(b) else {
            let names: Vec<String> = Break::ALL
                .iter()
                .map(|b| format!("`{}`", b.name()))
                .collect();
            anyhow::bail!("--break {b}: the demo can break {}", names.join(", "))
        };
        broken.insert(one);
    }
    let (shop, daemon) = supportwatch::demo::start(listen, broken).await?;
    println!("supportwatch demo");
    println!("  demo shop     {}  and  {}", shop.http_url, shop.https_url);
    println!("  contact form  {}/contacts", shop.http_url);
    println!(
        "  mail server   smtp://{}  (support mailbox: {})",
        shop.smtp,
        shop.support_maildir.display()
    );
    println!("  JS form       {}/js-contacts", shop.http_url);
    println!("  widget        {}/callback", shop.http_url);
    println!(
        "  phone (SIP)   sip:{}@{}  (hotline; callbacks ring the registered demo-line)",
        supportwatch::demo::pbx::HOTLINE,
        shop.pbx.addr()
    );
    println!("  status page   http://{}/status/shop/demo", daemon.addr);
    println!("  metrics       http://{}/metrics", daemon.addr);
    println!("  health        http://{}/healthz", daemon.addr);
    for s in &shop.skipped {
        println!("  skipped       {}: {}", s.check, s.reason);
    }
    if !broken_names(&shop).is_empty() {
        match heal_after {
            Some(after) => println!(
                "  broken        {} (repaired after {}; watch the owner's Telegram below)",
                broken_names(&shop),
                humantime::format_duration(after)
            ),
            None => println!("  broken        {}", broken_names(&shop)),
        }
    }
    if digest_now {
        println!("  digest        sent to the owner's Telegram once every check has run");
    }
    println!("  stop with Ctrl-C\n");
    if let Some(after) = heal_after {
        let breaks = shop.breaks.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let healed = breaks.heal();
            if !healed.is_empty() {
                let names: Vec<&str> = healed.iter().map(|b| b.name()).collect();
                println!(
                    "\n  demo: {} repaired; the alert resolves after the next passing run\n",
                    names.join(", ")
                );
            }
        });
    }
    let mut reports = daemon.scheduler.subscribe();
    let printer = tokio::spawn(async move {
        loop {
            match reports.recv().await {
                Ok(r) => println!("{}", report::line(&r)),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    });
    if digest_now {
        supportwatch::demo::digest_after_first_runs(&daemon).await;
    }
    daemon.run_until_signal().await;
    printer.abort();
    drop(shop);
    Ok(ExitCode::SUCCESS)
}

fn broken_names(shop: &supportwatch::demo::DemoShop) -> String {
    Break::ALL
        .iter()
        .filter(|b| shop.breaks.contains(b))
        .map(|b| b.name())
        .collect::<Vec<_>>()
        .join(", ")
}
