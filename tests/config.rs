//! Config loading: every shipped example loads, every invalid fixture fails with its exact,
//! located message, defaults are inherited, secrets never print.

use std::path::{Path, PathBuf};
use supportwatch::config;
use supportwatch::value::{Channel, Dur, Kind};

fn load(name: &str, text: &str) -> Result<config::Config, config::ConfigErrors> {
    config::load_sources(&[(PathBuf::from(name), text.to_string())])
}

#[test]
fn every_shipped_config_loads_and_prepares() {
    supportwatch::tlsconf::install_crypto_provider();
    for dir in ["checks", "checks/examples"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        if !dir.is_dir() {
            continue;
        }
        let config = config::load_dir(&dir).unwrap_or_else(|e| panic!("{}:\n{e}", dir.display()));
        assert!(!config.checks.is_empty(), "{} has no checks", dir.display());
        supportwatch::assemble::prepare(config)
            .unwrap_or_else(|e| panic!("{}:\n{e}", dir.display()));
    }
}

#[test]
fn every_invalid_fixture_fails_with_its_exact_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 15, "fixtures missing");
    for path in fixtures {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).expect("fixture");
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{name} has no .expected file"));
        let shown = format!("tests/fixtures/invalid/{name}");
        let errors = match load(&shown, &text).and_then(supportwatch::assemble::prepare) {
            Ok(_) => panic!("{name} must be refused"),
            Err(e) => e,
        };
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(lines.join("\n"), expected.trim_end(), "{name}");
        for e in &errors.0 {
            assert!(e.position.is_some(), "{name}: `{e}` has no position");
        }
    }
}

#[test]
fn problems_in_several_files_are_reported_together() {
    let errors = config::load_sources(&[
        (
            PathBuf::from("a.yaml"),
            "checks:\n  - { name: a, kind: http, urll: x }\n".into(),
        ),
        (
            PathBuf::from("b.yaml"),
            "checks:\n  - name: b\n    kind: http\n    url: http://127.0.0.1/\n    timeout: 2\n"
                .into(),
        ),
    ])
    .expect_err("both files are wrong");
    let text = errors.to_string();
    assert!(text.contains("a.yaml:2:"), "{text}");
    assert!(
        text.contains("b.yaml:5:14: check \"b\": invalid duration `2`"),
        "{text}"
    );
    assert!(text.ends_with("2 problems in the config"), "{text}");
}

#[test]
fn defaults_are_inherited_and_checks_override_them() {
    let config = load(
        "d.yaml",
        r#"
defaults:
  interval: 5m
  timeout: 20s
  retries: 2
  labels: { shop: vesna, location: msk }
checks:
  - { name: inherits, kind: http, url: "https://vesna.example/" }
  - name: overrides
    kind: http
    url: "https://vesna.example/contacts"
    channel: feedback_form
    interval: 1m
    retries: 0
    shop: other
    labels: { team: support }
"#,
    )
    .expect("valid");
    let a = config.check("inherits").expect("check");
    assert_eq!(
        (a.interval, a.timeout, a.retries),
        (Dur::secs(300), Dur::secs(20), 2)
    );
    assert_eq!(a.shop(), "vesna");
    assert_eq!(a.labels.get("location").map(String::as_str), Some("msk"));
    assert_eq!((a.kind(), a.channel), (Kind::Http, Channel::Website));
    let b = config.check("overrides").expect("check");
    assert_eq!(
        (b.interval, b.timeout, b.retries),
        (Dur::secs(60), Dur::secs(20), 0)
    );
    assert_eq!(b.shop(), "other");
    assert_eq!(b.labels.get("team").map(String::as_str), Some("support"));
    assert_eq!(b.channel, Channel::FeedbackForm);
}

#[test]
fn sections_may_be_set_in_one_file_only() {
    let errors = config::load_sources(&[
        (
            PathBuf::from("a.yaml"),
            "defaults: { interval: 1m }\n".into(),
        ),
        (
            PathBuf::from("b.yaml"),
            "defaults: { interval: 2m }\n".into(),
        ),
    ])
    .expect_err("defaults twice");
    assert_eq!(
        errors.0[0].to_string(),
        "b.yaml: `defaults` is already set in a.yaml; keep it in one file"
    );
}

#[test]
fn secrets_are_used_but_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, "file-secret-42\n").expect("write");
    let vars = [("SW_TEST_API_KEY".to_string(), "env-secret-17".to_string())].into();
    let yaml = format!(
        r#"
checks:
  - name: api
    kind: http
    url: "https://shop.example/api?key=${{SW_TEST_API_KEY}}"
    headers:
      authorization: "Bearer ${{file:{}}}"
"#,
        secret_file.display()
    );
    let config = supportwatch::value::with_overlay(&vars, || load("s.yaml", &yaml)).expect("valid");
    let check = config.check("api").expect("check");
    let supportwatch::config::CheckSpec::Http(spec) = &check.spec else {
        panic!("http check")
    };
    assert_eq!(
        spec.url.expose(),
        "https://shop.example/api?key=env-secret-17"
    );
    assert_eq!(
        spec.headers["authorization"].expose(),
        "Bearer file-secret-42"
    );
    let shown = format!("{config:?} {} {}", spec.url, check.spec.summary());
    assert!(!shown.contains("env-secret-17"), "{shown}");
    assert!(!shown.contains("file-secret-42"), "{shown}");
    assert!(shown.contains("${SW_TEST_API_KEY}"), "{shown}");
}

#[test]
fn secret_files_that_are_devices_or_too_large_are_located_errors_of_their_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big");
    std::fs::write(&big, vec![b'a'; 64 * 1024 + 1]).expect("write");
    let yaml = format!(
        "checks:\n  - name: api\n    kind: http\n    url: https://shop.example/\n    \
         headers:\n      authorization: \"${{file:/dev/zero}}\"\n  - name: other\n    kind: http\n    \
         url: https://shop.example/\n    headers:\n      x-key: \"${{file:{}}}\"\n",
        big.display()
    );
    let errors = load("s.yaml", &yaml).expect_err("refused");
    let shown: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "s.yaml:2:5: check \"api\": cannot read secret file `/dev/zero` (from `${file:/dev/zero}`): \
             it is not a regular file (it is a device)"
                .to_string(),
            format!(
                "s.yaml:7:5: check \"other\": cannot read secret file `{0}` (from `${{file:{0}}}`): \
                 it is larger than the 65536 bytes a secret file may have",
                big.display()
            ),
        ]
    );
}
