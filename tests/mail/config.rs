//! `mail` check configs: every problem refused with its exact message, and the shipped example.

/// Loads `yaml` and returns every config problem, one per line.
fn config_errors(yaml: &str) -> String {
    match supportwatch::config::load_sources(&[(
        std::path::PathBuf::from("test.yaml"),
        yaml.to_string(),
    )]) {
        Ok(_) => panic!("config should be refused:\n{yaml}"),
        Err(e) => {
            e.0.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        }
    }
}

fn check_with(body: &str) -> String {
    format!(
        "checks:\n  - name: m\n    kind: mail\n    channel: email\n    from: monitor@example.ru\n    to: support@shop.example\n{body}"
    )
}

#[test]
fn bad_mail_configs_are_refused_with_exact_messages() {
    let cases = [
        (
            "    smtp: \"smtp://mx.shop.example\"\n    user: monitor@example.ru\n    password: hunter2\n",
            "test.yaml:2:5: check \"m\": `user`/`password` over plain `smtp://mx.shop.example` would send the password unencrypted; use smtp+starttls://mx.shop.example:587 or smtps://mx.shop.example:465 (plain AUTH is allowed to a loopback relay only)",
        ),
        (
            "    smtp: \"smtp+starttls://mx.shop.example\"\n    user: monitor@example.ru\n",
            "test.yaml:2:5: check \"m\": set both `user` and `password` for SMTP AUTH, or neither",
        ),
        (
            "    smtp: \"smtp://mx.shop.example\"\n    ca_file: /etc/ca.pem\n",
            "test.yaml:2:5: check \"m\": `ca_file` needs TLS, but `smtp://mx.shop.example` is plain SMTP; use smtp+starttls:// or smtps://",
        ),
        (
            "    smtp: \"imap://mx.shop.example\"\n",
            "test.yaml:2:5: check \"m\": smtp URL scheme `imap` must be smtp:// (no TLS), smtp+starttls:// (STARTTLS required) or smtps:// (implicit TLS)",
        ),
        (
            "    smtp: \"smtp://mx.shop.example\"\n    subject: \"Automated test\"\n    body: \"Automated test, please ignore\"\n",
            "test.yaml:2:5: check \"m\": put `{{token}}` in `subject` or `body`: helpdesks and autoresponders often keep only those, and the token is how the delivery and the auto-reply are recognised",
        ),
        (
            "    smtp: \"smtp://mx.shop.example\"\n    subject: \"{{tokn}}\"\n",
            "test.yaml:2:5: check \"m\": unknown template variable `{{tokn}}`, expected one of `{{token}}`, `{{check}}`, `{{now}}`, `{{phone.NAME.number}}`",
        ),
        (
            "    smpt: \"smtp://mx.shop.example\"\n",
            "test.yaml:7:5: check \"m\": unknown field `smpt`, expected one of smtp, user, password, ca_file, helo, from, to, subject, body, min_interval, deliver, auto_reply (did you mean `smtp`?)",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(config_errors(&check_with(body)), expected, "{body}");
    }
    let bad_from = "checks:\n  - name: m\n    kind: mail\n    channel: email\n    smtp: \"smtp://mx.shop.example\"\n    from: \"not an address\"\n    to: support@shop.example\n";
    assert_eq!(
        config_errors(bad_from),
        "test.yaml:2:5: check \"m\": invalid `from` address `not an address` (invalid input): write `user@domain` or `Name <user@domain>`"
    );
}

#[test]
fn the_shipped_example_has_a_mail_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("checks/examples");
    let config = supportwatch::config::load_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    let check = config
        .checks
        .iter()
        .find(|c| c.kind() == supportwatch::value::Kind::Mail)
        .expect("checks/examples has a mail check");
    let (deliver, auto_reply) = check.spec.deliveries();
    assert!(deliver.is_some() && auto_reply.is_some());
    let listed = check.spec.summary();
    assert_eq!(
        listed,
        "mail to support@example.ru via smtp+starttls://smtp.example.ru:587"
    );
    supportwatch::tlsconf::install_crypto_provider();
    supportwatch::assemble::prepare(config).unwrap_or_else(|e| panic!("{e}"));
}
