//! Property tests of the config's numbers: whatever a user writes into the scheduler's limits and
//! a check's durations, loading either succeeds or reports located problems — it never panics —
//! and the scheduler's limits built from any config that loads never panic either.

use proptest::prelude::*;
use std::path::PathBuf;
use supportwatch::config::{self, MAX_CONCURRENCY_LIMIT};
use supportwatch::schedule::Limits;

/// Something a user could type where a number or a duration belongs: numbers of every size and
/// sign, durations with huge or many parts, and arbitrary text.
fn scalar() -> impl Strategy<Value = String> {
    let unit = prop_oneof![
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just("d"),
        Just("w")
    ];
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        (0u64..20_000).prop_map(|n| n.to_string()),
        "[0-9]{1,30}",
        prop::collection::vec((any::<u64>(), unit.clone()), 1..4)
            .prop_map(|parts| { parts.iter().map(|(n, u)| format!("{n}{u}")).collect() }),
        prop::collection::vec(((0u64..100_000), unit), 1..3)
            .prop_map(|parts| { parts.iter().map(|(n, u)| format!("{n}{u}")).collect() }),
        // A sum of many huge parts: each fits, the total does not fit a `Duration`.
        (u64::MAX / 2..=u64::MAX, 1000usize..1200)
            .prop_map(|(n, parts)| format!("{n}ms").repeat(parts)),
        // Any text, as a double-quoted YAML scalar (a JSON string is one).
        ".{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
    ]
}

/// Fields of the scheduler and of a check, each set to one of `values`.
fn config_text(values: &[String]) -> String {
    let v = |i: usize| values[i % values.len()].as_str();
    format!(
        "scheduler:\n  max_concurrent: {}\n  max_per_host: {}\n  hosts: {{ 127.0.0.1: {} }}\n  \
         max_per_kind: {{ http: {}, tls: {} }}\n  shutdown_grace: {}\n\
         checks:\n  - name: home\n    kind: http\n    url: http://127.0.0.1:9/\n    \
         interval: {}\n    timeout: {}\n    retries: {}\n    retry_delay: {}\n",
        v(0),
        v(1),
        v(2),
        v(3),
        v(4),
        v(5),
        v(6),
        v(7),
        v(8),
        v(9),
    )
}

/// Indices into [`config_text`]'s values that are durations; the others are counts.
const DURATION_FIELDS: [usize; 4] = [5, 6, 7, 9];

/// One value per field of [`config_text`]: usually a plausible one for the field (so that many
/// configs load and the scheduler is built from them), otherwise anything from [`scalar`].
fn field_values() -> impl Strategy<Value = Vec<String>> {
    (0..10usize)
        .map(|i| {
            let plausible = if DURATION_FIELDS.contains(&i) {
                (1u64..60).prop_map(|n| format!("{n}s")).boxed()
            } else {
                (0u64..=50).prop_map(|n| n.to_string()).boxed()
            };
            prop_oneof![5 => plausible, 1 => scalar()].boxed()
        })
        .collect::<Vec<_>>()
}

/// The property: loading never panics; what loads is within range and builds limits and a run's
/// permits without panicking; what does not load has only located problems. Returns whether the
/// config loaded.
fn loads_or_gives_located_errors(values: &[String]) -> Result<bool, TestCaseError> {
    let text = config_text(values);
    let config = match config::load_sources(&[(PathBuf::from("shop.yaml"), text.clone())]) {
        Err(errors) => {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert_eq!(
                    e.file.as_deref(),
                    Some(std::path::Path::new("shop.yaml")),
                    "{}",
                    e
                );
                prop_assert!(e.position.is_some(), "unlocated: {}\n{}", e, text);
            }
            return Ok(false);
        }
        Ok(config) => config,
    };
    let s = &config.scheduler;
    let in_range = |n: &usize| (1..=MAX_CONCURRENCY_LIMIT).contains(n);
    prop_assert!(in_range(&s.max_concurrent) && in_range(&s.max_per_host));
    prop_assert!(
        s.hosts
            .values()
            .chain(s.max_per_kind.values())
            .all(in_range)
    );
    let check = &config.checks[0];
    prop_assert!(check.timeout <= check.interval);
    // Everything the daemon builds from a config that loads: probes, then limits, then the
    // permits of a run (which create the per-host semaphore).
    let prepared =
        supportwatch::assemble::prepare(config).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let limits = Limits::new(&prepared.config.scheduler);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    drop(runtime.block_on(limits.acquire(&prepared.checks[0])));
    Ok(true)
}

#[test]
fn any_scheduler_and_duration_values_load_or_give_located_errors() {
    supportwatch::tlsconf::install_crypto_provider();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(512));
    let loaded = std::cell::Cell::new(0);
    let result = runner.run(&field_values(), |values| {
        if loads_or_gives_located_errors(&values)? {
            loaded.set(loaded.get() + 1);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // Both sides of the property were exercised (about a tenth of the cases load).
    assert!(loaded.get() > 0, "no generated config loaded");
    assert!(loaded.get() < 512, "every generated config loaded");
}

#[test]
fn limits_from_the_type_s_extremes_do_not_panic() {
    // What a config could hold if validation were ever bypassed (a library user, a future field).
    for n in [0, 1, MAX_CONCURRENCY_LIMIT, usize::MAX / 4, usize::MAX] {
        let scheduler = config::SchedulerConfig {
            max_concurrent: n,
            max_per_host: n,
            max_per_kind: [(supportwatch::value::Kind::Http, n)].into(),
            hosts: [("127.0.0.1".to_string(), n)].into(),
            ..config::SchedulerConfig::default()
        };
        let _ = Limits::new(&scheduler);
    }
}
