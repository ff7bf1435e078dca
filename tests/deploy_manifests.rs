//! The Kubernetes manifests under `deploy/` cannot rot unnoticed: every YAML document parses and
//! has what Kubernetes needs; every file a kustomization names exists; every `--flag` the
//! containers pass is one `supportwatch run --help` lists; every environment variable is expanded
//! in the arguments, read by the config as `${NAME}`, or documented in the README; the example
//! config validates with the example Secret's values; overlays have as many shards as pods; and
//! the PrometheusRule carries exactly `dashboards/fleet-alerts.yml`, which promtool accepts.
//!
//! Nothing here needs a cluster or kustomize: the files are read as data.

use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kube() -> PathBuf {
    root().join("deploy/kubernetes")
}

/// A path relative to the project root, for messages.
fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Every `*.yaml`/`*.yml` file under `dir`, in name order.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", shown(dir)))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            out.push(path);
        }
    }
    out
}

/// The documents of a (possibly multi-document) YAML file; empty documents are left out.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", shown(path)));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", shown(path)));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// supportwatch config files (the ConfigMap's content) live in directories named `checks`; every
/// other YAML file under deploy/ holds Kubernetes objects or kustomizations.
fn is_config(path: &Path) -> bool {
    path.parent()
        .and_then(|p| p.file_name())
        .is_some_and(|name| name == "checks")
}

/// Every Kubernetes object (or kustomization) under deploy/, with its file.
fn objects() -> Vec<(PathBuf, Value)> {
    let files = yaml_files(&root().join("deploy"));
    assert!(!files.is_empty(), "deploy/ holds no YAML");
    files
        .into_iter()
        .filter(|p| !is_config(p))
        .flat_map(|p| documents(&p).into_iter().map(move |d| (p.clone(), d)))
        .collect()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn strs(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The objects of one kind, with their files.
fn of_kind<'a>(objects: &'a [(PathBuf, Value)], wanted: &str) -> Vec<(&'a Path, &'a Value)> {
    objects
        .iter()
        .filter(|(_, d)| kind(d) == wanted)
        .map(|(p, d)| (p.as_path(), d))
        .collect()
}

/// The containers of a StatefulSet (or of a patch of one).
fn containers(doc: &Value) -> Vec<&Value> {
    doc["spec"]["template"]["spec"]["containers"]
        .as_array()
        .map(|c| c.iter().collect())
        .unwrap_or_default()
}

/// The base StatefulSet and its one container.
fn base_statefulset(objects: &[(PathBuf, Value)]) -> (&Value, &Value) {
    let base = kube().join("base/statefulset.yaml");
    let sets: Vec<_> = objects
        .iter()
        .filter(|(p, d)| *p == base && kind(d) == "StatefulSet")
        .map(|(_, d)| d)
        .collect();
    assert_eq!(sets.len(), 1, "base/statefulset.yaml: one StatefulSet");
    let set = sets[0];
    let container = containers(set)
        .into_iter()
        .find(|c| c["name"] == "supportwatch")
        .expect("the StatefulSet has a container named supportwatch");
    (set, container)
}

/// The long flags `supportwatch run --help` lists.
fn run_flags() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_supportwatch"))
        .args(["run", "--help"])
        .output()
        .expect("run supportwatch");
    assert!(out.status.success(), "supportwatch run --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    let flag = Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
    let flags: BTreeSet<String> = flag
        .find_iter(&help)
        .map(|m| m.as_str().to_string())
        .collect();
    // The help does list flags: an empty set would let every flag "exist" nowhere.
    assert!(flags.contains("--config"), "run --help: {help}");
    flags
}

/// The value of a long flag in an argument list (`--flag value` or `--flag=value`).
fn flag_value<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    args.iter().enumerate().find_map(|(i, a)| {
        if *a == name {
            args.get(i + 1).copied()
        } else {
            a.strip_prefix(prefix.as_str())
        }
    })
}

#[test]
fn every_document_has_what_kubernetes_needs() {
    let objects = objects();
    let mut missing = Vec::new();
    for (path, doc) in &objects {
        let file = shown(path);
        if doc["apiVersion"].as_str().is_none_or(str::is_empty) {
            missing.push(format!("{file}: a document has no apiVersion"));
        }
        if kind(doc).is_empty() {
            missing.push(format!("{file}: a document has no kind"));
        }
        // Kustomizations and components are read by kustomize, not the API server.
        let kustomize = matches!(kind(doc), "Kustomization" | "Component");
        if !kustomize && doc["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            missing.push(format!("{file}: a {} has no metadata.name", kind(doc)));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
    let kinds: BTreeSet<&str> = objects.iter().map(|(_, d)| kind(d)).collect();
    for expected in [
        "Kustomization",
        "Component",
        "StatefulSet",
        "Service",
        "Secret",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(expected), "deploy/ has no {expected}");
    }
}

#[test]
fn every_file_a_kustomization_names_exists() {
    let objects = objects();
    let kustomizations: Vec<_> = objects
        .iter()
        .filter(|(_, d)| matches!(kind(d), "Kustomization" | "Component"))
        .collect();
    assert!(
        kustomizations.len() >= 5,
        "base, component, rules, overlays"
    );
    let mut missing = Vec::new();
    for (path, k) in kustomizations {
        let dir = path.parent().expect("a kustomization lives in a directory");
        let mut named: Vec<&str> = strs(&k["resources"]);
        named.extend(strs(&k["components"]));
        for patch in k["patches"].as_array().into_iter().flatten() {
            named.extend(patch["path"].as_str());
        }
        for generator in k["configMapGenerator"].as_array().into_iter().flatten() {
            named.extend(strs(&generator["files"]));
        }
        for name in named {
            if !dir.join(name).exists() {
                missing.push(format!("{}: {name} does not exist", shown(path)));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// A new config file left out of the ConfigMap would silently not be deployed.
#[test]
fn the_configmap_holds_every_config_file() {
    let path = kube().join("base/kustomization.yaml");
    let k = &documents(&path)[0];
    let generator = k["configMapGenerator"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g["name"] == "supportwatch-checks")
        .expect("base: configMapGenerator supportwatch-checks");
    let listed: BTreeSet<&str> = strs(&generator["files"]).into_iter().collect();
    let base = kube().join("base");
    let on_disk: Vec<String> = yaml_files(&base.join("checks"))
        .iter()
        .map(|p| p.strip_prefix(&base).unwrap_or(p).display().to_string())
        .collect();
    assert!(!on_disk.is_empty());
    for file in &on_disk {
        assert!(
            listed.contains(file.as_str()),
            "{file} is not in supportwatch-checks"
        );
    }
    assert_eq!(listed.len(), on_disk.len(), "{listed:?} vs {on_disk:?}");
}

/// The StatefulSet runs `supportwatch run` with the config where the ConfigMap is mounted, its
/// state on the claimed volume, shards from the pod name and a location, on the ports the
/// Services, probes and NetworkPolicy name.
#[test]
fn the_statefulset_runs_one_shard_per_pod() {
    let objects = objects();
    let (set, c) = base_statefulset(&objects);
    let args = strs(&c["args"]);
    assert_eq!(args.first(), Some(&"run"), "args: {args:?}");
    assert_eq!(flag_value(&args, "--shard"), Some("auto/$(SHARDS)"));
    assert_eq!(flag_value(&args, "--location"), Some("$(LOCATION)"));
    assert_eq!(flag_value(&args, "--listen"), Some("0.0.0.0:9750"));
    let config = flag_value(&args, "--config").expect("--config");

    // `auto` reads the shard from POD_NAME, which must be the pod's name.
    let env = &c["env"];
    let pod_name = env
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "POD_NAME")
        .expect("env POD_NAME");
    assert_eq!(
        pod_name["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );

    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["name"].as_str()?, m["mountPath"].as_str()?)))
        .collect();
    let volumes: BTreeSet<&str> = set["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            set["spec"]["volumeClaimTemplates"]
                .as_array()
                .into_iter()
                .flatten(),
        )
        .filter_map(|v| v["name"].as_str().or(v["metadata"]["name"].as_str()))
        .collect();
    for name in mounts.keys() {
        assert!(
            volumes.contains(name),
            "volume {name} is mounted but not declared"
        );
    }
    assert_eq!(
        mounts.get("config"),
        Some(&config),
        "the ConfigMap is mounted at --config"
    );
    let state = mounts.get("state").expect("the state volume is mounted");
    let server = &documents(&kube().join("base/checks/server.yaml"))[0];
    let db = server["storage"]["path"].as_str().expect("storage.path");
    assert!(
        Path::new(db).starts_with(state),
        "storage.path {db} is not on the state volume at {state}"
    );
    assert!(
        mounts.contains_key("tmp"),
        "a writable /tmp beside a read-only root"
    );

    let ports: BTreeMap<&str, u64> = c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["name"].as_str()?, p["containerPort"].as_u64()?)))
        .collect();
    assert_eq!(ports.get("metrics"), Some(&9750), "--listen port");
    let hooks_listen = server["server"]["hooks_listen"]
        .as_str()
        .expect("server.hooks_listen: /hooks/ on a port of its own");
    assert_eq!(
        hooks_listen.rsplit_once(':').map(|(_, p)| p),
        Some(
            ports
                .get("hooks")
                .map(u64::to_string)
                .as_deref()
                .unwrap_or("")
        ),
        "server.hooks_listen and the hooks port"
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(c[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "metrics", "{probe}");
    }

    let pod = &set["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(pod["runAsNonRoot"], true);
    assert!(pod["runAsUser"].as_u64().is_some_and(|u| u > 0));
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
}

/// Only the hooks port is open to everyone; the metrics port only to a namespace.
#[test]
fn the_network_policy_opens_only_the_hooks_port_to_everyone() {
    let objects = objects();
    let policies = of_kind(&objects, "NetworkPolicy");
    assert_eq!(policies.len(), 1);
    let rules = policies[0].1["spec"]["ingress"]
        .as_array()
        .expect("ingress rules");
    for rule in rules {
        let ports: Vec<&str> = rule["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_str())
            .collect();
        assert!(!ports.is_empty(), "a rule without ports opens every port");
        if rule["from"].is_null() {
            assert_eq!(ports, ["hooks"], "open to everyone: {ports:?}");
        } else {
            assert!(
                rule["from"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|f| f["namespaceSelector"].is_object() && f["ipBlock"].is_null()),
                "{rule}"
            );
        }
    }
}

/// Every `--flag` of every container under deploy/ (base and patches) is one `run --help`
/// lists, and every container runs `run`.
#[test]
fn every_flag_in_the_manifests_exists() {
    let objects = objects();
    let flags = run_flags();
    let mut seen = 0;
    let mut unknown = Vec::new();
    for (path, doc) in &objects {
        for c in containers(doc) {
            let args = strs(&c["args"]);
            if args.is_empty() {
                continue;
            }
            assert_eq!(args[0], "run", "{}: args {args:?}", shown(path));
            for arg in args.iter().filter(|a| a.starts_with("--")) {
                seen += 1;
                let name = arg.split('=').next().unwrap_or(arg);
                if !flags.contains(name) {
                    unknown.push(format!("{}: {name}", shown(path)));
                }
            }
        }
    }
    assert!(seen >= 4, "no flags found in the manifests");
    assert!(
        unknown.is_empty(),
        "flags `supportwatch run --help` does not list:\n{}",
        unknown.join("\n")
    );
}

/// `${NAME}` references (not `$${…}`, not `${file:…}`) in a text, each with whether it has a
/// default.
fn config_vars(text: &str) -> BTreeMap<String, bool> {
    let var = Regex::new(r"(\$?)\$\{([A-Za-z_][A-Za-z0-9_]*)(\}|:-)").unwrap();
    var.captures_iter(text)
        .filter(|c| c[1].is_empty())
        .map(|c| (c[2].to_string(), &c[3] == ":-"))
        .collect()
}

/// The keys of the example Secret.
fn secret_keys(objects: &[(PathBuf, Value)]) -> BTreeMap<String, String> {
    let secrets = of_kind(objects, "Secret");
    assert_eq!(secrets.len(), 1, "one example Secret");
    let (_, secret) = secrets[0];
    assert_eq!(secret["metadata"]["name"], "supportwatch-credentials");
    secret["stringData"]
        .as_object()
        .expect("stringData")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
        .collect()
}

/// Every variable a container sets is used: in its own arguments as `$(NAME)`, by the config as
/// `${NAME}`, or by supportwatch or chromium as documented in the README. Every `${NAME}` the
/// config needs is set, by `env` or by the Secret's keys.
#[test]
fn environment_variables_are_used_and_documented() {
    let objects = objects();
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let config: String = yaml_files(&kube().join("base/checks"))
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("config file"))
        .collect();
    let needed = config_vars(&config);
    assert!(!needed.is_empty(), "the example config uses no ${{NAME}}");
    let secret = secret_keys(&objects);

    let mut problems = Vec::new();
    let mut set: BTreeSet<String> = BTreeSet::new();
    for (path, doc) in &objects {
        for c in containers(doc) {
            let args = strs(&c["args"]).join(" ");
            let names = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str());
            for name in names {
                set.insert(name.to_string());
                let used = args.contains(&format!("$({name})"))
                    || needed.contains_key(name)
                    || readme.contains(&format!("`{name}`"));
                if !used {
                    problems.push(format!(
                        "{}: env {name} is neither in the args, nor ${{{name}}} in the config, \
                         nor `{name}` in README.md",
                        shown(path)
                    ));
                }
            }
            for from in c["envFrom"].as_array().into_iter().flatten() {
                if from["secretRef"]["name"] == "supportwatch-credentials" {
                    set.extend(secret.keys().cloned());
                }
            }
        }
    }
    for (name, has_default) in &needed {
        if !has_default && !set.contains(name) {
            problems.push(format!(
                "the config needs ${{{name}}}, which no manifest sets"
            ));
        }
    }
    for name in secret.keys() {
        if !needed.contains_key(name) {
            problems.push(format!("the Secret's {name} is not used by the config"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The config the ConfigMap carries is one supportwatch accepts, with the example Secret's values.
#[test]
fn the_example_config_validates() {
    let objects = objects();
    let out = Command::new(env!("CARGO_BIN_EXE_supportwatch"))
        .args(["validate", "--config"])
        .arg(kube().join("base/checks"))
        .envs(secret_keys(&objects))
        .output()
        .expect("run supportwatch validate");
    assert!(
        out.status.success(),
        "supportwatch validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Each overlay: as many shards (`SHARDS`) as pods, its location on the pods, one hooks Service
/// per pod, and the browser image named when it uses the browser component.
#[test]
fn overlays_have_one_shard_per_pod() {
    let overlays = kube().join("overlays");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&overlays)
        .expect("deploy/kubernetes/overlays")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let names: Vec<String> = dirs
        .iter()
        .filter_map(|d| d.file_name()?.to_str().map(String::from))
        .collect();
    assert_eq!(names, ["msk", "vvo"]);
    for dir in dirs {
        let file = dir.join("kustomization.yaml");
        let k = &documents(&file)[0];
        let at = shown(&file);
        let replicas = k["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == "supportwatch")
            .and_then(|r| r["count"].as_u64())
            .unwrap_or_else(|| panic!("{at}: replicas of supportwatch"));
        let literals: BTreeMap<&str, &str> = k["configMapGenerator"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|g| g["name"] == "supportwatch-fleet")
            .flat_map(|g| strs(&g["literals"]))
            .filter_map(|l| l.split_once('='))
            .collect();
        assert_eq!(
            literals.get("SHARDS"),
            Some(&replicas.to_string().as_str()),
            "{at}: SHARDS and replicas"
        );
        let location = literals
            .get("LOCATION")
            .unwrap_or_else(|| panic!("{at}: LOCATION"));
        let labelled = k["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["pairs"]["location"] == *location && l["includeTemplates"] == true);
        assert!(labelled, "{at}: pods labelled location={location}");

        let hooks = documents(&dir.join("hooks-services.yaml"));
        let selected: Vec<&str> = hooks
            .iter()
            .filter_map(|s| s["spec"]["selector"]["statefulset.kubernetes.io/pod-name"].as_str())
            .collect();
        let expected: Vec<String> = (0..replicas).map(|i| format!("supportwatch-{i}")).collect();
        assert_eq!(selected, expected, "{at}: one hooks Service per pod");

        if strs(&k["components"]).contains(&"../../components/browser") {
            let images: Vec<&str> = k["images"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["name"].as_str())
                .collect();
            assert!(
                images.contains(&"supportwatch-browser"),
                "{at}: uses the browser component but maps no supportwatch-browser image"
            );
        }
    }
}

/// The PrometheusRule is `dashboards/fleet-alerts.yml`, and promtool accepts what it carries.
#[test]
fn the_prometheus_rule_is_the_fleet_rules() {
    let objects = objects();
    let rules = of_kind(&objects, "PrometheusRule");
    assert_eq!(rules.len(), 1);
    let spec = &rules[0].1["spec"];
    let fleet = &documents(&root().join("dashboards/fleet-alerts.yml"))[0];
    let rules_of = |v: &'_ Value| -> Vec<Value> {
        v["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    };
    let (ours, theirs) = (rules_of(spec), rules_of(fleet));
    let differ: Vec<String> = ours
        .iter()
        .zip(&theirs)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| {
            a["alert"]
                .as_str()
                .unwrap_or("a recording rule")
                .to_string()
        })
        .collect();
    assert!(
        differ.is_empty() && ours.len() == theirs.len(),
        "the PrometheusRule's rules differ from dashboards/fleet-alerts.yml: {differ:?}, \
         {} rules vs {}",
        ours.len(),
        theirs.len()
    );
    assert!(
        spec == fleet,
        "the PrometheusRule's groups differ from dashboards/fleet-alerts.yml"
    );

    // JSON is YAML: promtool reads the extracted groups as a rule file.
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("prometheusrule-spec.yml");
    std::fs::write(&file, serde_json::to_string_pretty(spec).expect("JSON")).expect("write");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool must be installed: apt-get install prometheus (scripts/test does it)");
    assert!(
        out.status.success(),
        "promtool check rules on the PrometheusRule's spec:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let groups = spec["groups"].as_array().expect("groups");
    let alerts = groups
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter(|r| r["alert"].is_string())
        .count();
    assert!(alerts >= 5, "{alerts} alerts");
}

#[test]
fn config_vars_finds_references_but_not_escapes_or_files() {
    let found = config_vars("a ${ONE} $${TWO} ${file:/x} ${THREE:-x} Bearer ${FOUR}");
    let expected: BTreeMap<String, bool> = [
        ("FOUR".to_string(), false),
        ("ONE".to_string(), false),
        ("THREE".to_string(), true),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn flag_value_reads_both_spellings() {
    let args = ["run", "--shard", "auto/3", "--location=msk"];
    assert_eq!(flag_value(&args, "--shard"), Some("auto/3"));
    assert_eq!(flag_value(&args, "--location"), Some("msk"));
    assert_eq!(flag_value(&args, "--listen"), None);
}
