//! examples/github-release.yml: it parses (PyYAML, Debian's python3-yaml), it has the
//! triggers and steps the README promises, its secrets reach cargo speedy through
//! the environment under the names cargo speedy reads, and every `cargo speedy`
//! command line in it runs: against the fixture workspace and a local-directory
//! repository instead of the bucket, first as on a push to main, then as on a tag.

use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

const WORKFLOW: &str = "examples/github-release.yml";

fn workflow_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(WORKFLOW)
}

/// The workflow as JSON, parsed by PyYAML.
fn parse_workflow() -> Value {
    let script = "import json, sys, yaml\njson.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)";
    let output = Command::new("python3")
        .args(["-c", script])
        .arg(workflow_path())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 (apt-get install python3-yaml; .ci/deps does): {e}")
        });
    assert!(
        output.status.success(),
        "{WORKFLOW} does not parse (or PyYAML is missing: apt-get install python3-yaml; .ci/deps does): {}",
        describe(&output)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from python3")
}

/// A step that runs `cargo speedy`: its condition, environment and command line.
#[derive(Debug)]
struct SpeedyStep {
    name: String,
    condition: Option<String>,
    env: Vec<(String, String)>,
    line: String,
}

fn steps(workflow: &Value) -> &Vec<Value> {
    let jobs = workflow["jobs"].as_object().expect("jobs");
    assert_eq!(jobs.len(), 1, "one release job");
    jobs.values().next().unwrap()["steps"]
        .as_array()
        .expect("steps")
}

/// Every command line of a `run:` that calls `cargo speedy`, continuation lines joined.
fn speedy_steps(workflow: &Value) -> Vec<SpeedyStep> {
    let mut found = Vec::new();
    for step in steps(workflow) {
        let Some(run) = step["run"].as_str() else {
            continue;
        };
        let script = run.replace("\\\n", " ");
        for line in script.lines().filter(|l| l.contains("cargo speedy")) {
            let env = step["env"]
                .as_object()
                .map(|env| {
                    env.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().expect("env value").to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            found.push(SpeedyStep {
                name: step["name"].as_str().unwrap_or_default().to_owned(),
                condition: step["if"].as_str().map(str::to_owned),
                env,
                line: line.trim().to_owned(),
            });
        }
    }
    found
}

#[test]
fn the_workflow_has_the_promised_triggers_steps_and_secrets() {
    let workflow = parse_workflow();
    // YAML 1.1 reads the key `on` as true.
    let on = workflow.get("on").or(workflow.get("true")).expect("on:");
    assert_eq!(on["push"]["branches"], serde_json::json!(["main"]));
    assert_eq!(on["push"]["tags"], serde_json::json!(["v*"]));

    let speedy = speedy_steps(&workflow);
    let on_main: Vec<&SpeedyStep> = speedy
        .iter()
        .filter(|s| s.condition.as_deref() == Some("github.ref == 'refs/heads/main'"))
        .collect();
    let on_tag: Vec<&SpeedyStep> = speedy
        .iter()
        .filter(|s| s.condition.as_deref() == Some("startsWith(github.ref, 'refs/tags/v')"))
        .collect();
    assert_eq!(on_main.len(), 1, "{speedy:?}");
    assert!(
        on_main[0]
            .line
            .starts_with("cargo speedy release --suite dev "),
        "{speedy:?}"
    );
    assert_eq!(on_tag.len(), 1, "{speedy:?}");
    assert!(
        on_tag[0]
            .line
            .starts_with("cargo speedy promote --from dev --to stable "),
        "{speedy:?}"
    );
    for step in &speedy {
        // JSON output, kept as an artifact below.
        assert!(
            step.line.contains("--message-format json > ") && step.line.ends_with(".jsonl"),
            "{step:?}"
        );
        // Where the repository is belongs to the workspace's Cargo.toml, which is what
        // lets the test below point the same lines at a local directory.
        for flag in ["--repo-dir", "--bucket", "--endpoint", "--key-file"] {
            assert!(!step.line.contains(flag), "{step:?}");
        }
        // Secrets only through the environment, each under its own name.
        assert!(!step.line.contains("secrets."), "{step:?}");
        for (name, value) in &step.env {
            assert_eq!(value, &format!("${{{{ secrets.{name} }}}}"), "{step:?}");
        }
        let names: Vec<&str> = step.env.iter().map(|(k, _)| k.as_str()).collect();
        for needed in [
            cargo_speedy::keys::KEY_ENV,
            cargo_speedy::keys::PASSPHRASE_ENV,
            "SPACES_ACCESS_KEY_ID",
            "SPACES_SECRET_ACCESS_KEY",
        ] {
            assert!(names.contains(&needed), "{needed} missing from {step:?}");
        }
        if step.line.starts_with("cargo speedy release")
            || step.line.starts_with("cargo speedy promote")
        {
            assert!(
                names.contains(&cargo_speedy::cdn::TOKEN_VARIABLE),
                "{step:?}"
            );
        }
    }
    // The tool is installed from a lock file before any of it runs.
    let runs: Vec<&str> = steps(&workflow)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect();
    let install = runs
        .iter()
        .position(|r| r.contains("cargo install --locked") && r.contains("cargo-speedy"))
        .expect("a step that installs cargo-speedy");
    let first_use = runs
        .iter()
        .position(|r| r.contains("cargo speedy"))
        .expect("a cargo speedy step");
    assert!(install < first_use, "{runs:?}");

    // The JSON files are kept, also when a step failed.
    let upload = steps(&workflow)
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact@"))
        })
        .expect("an upload-artifact step");
    assert_eq!(upload["if"], "always()");
    assert_eq!(upload["with"]["path"], "*.jsonl");

    // The "CI" section of docs/reference.md has the same command lines, for any other CI.
    let reference =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md"))
            .unwrap();
    let ci = reference
        .split("\n## CI\n")
        .nth(1)
        .expect("a docs/reference.md section \"CI\"");
    let ci = ci.split("\n## ").next().unwrap();
    for step in &speedy {
        assert!(
            ci.contains(&step.line),
            "the CI section of docs/reference.md lacks {:?}",
            step.line
        );
    }
}

/// Runs one command line of the workflow as its step would, in `workspace`, with the
/// repository in `repo` instead of the bucket.
fn run_line(
    step: &SpeedyStep,
    workspace: &Path,
    repo: &Path,
    secrets: &[(&str, String)],
) -> Output {
    let rest = step
        .line
        .strip_prefix("cargo speedy ")
        .expect("cargo speedy ...");
    let (subcommand, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let line = format!(
        "'{}' speedy {subcommand} --repo-dir '{}' {rest}",
        env!("CARGO_BIN_EXE_cargo-speedy"),
        repo.display()
    );
    let mut command = Command::new("bash");
    command
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &line])
        .current_dir(workspace)
        .env_remove("CARGO_TARGET_DIR")
        .env("SOURCE_DATE_EPOCH", EPOCH);
    for (name, value) in &step.env {
        let secret = value
            .strip_prefix("${{ secrets.")
            .and_then(|v| v.strip_suffix(" }}"))
            .expect("a secret");
        let value = secrets
            .iter()
            .find(|(n, _)| *n == secret)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        command.env(name, value);
    }
    command.output().expect("run bash")
}

/// The `published` message of a JSON output file.
fn published(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|m| m["reason"] == "published")
        .unwrap_or_else(|| panic!("no published message in {}: {text}", path.display()))
}

#[test]
fn every_cargo_speedy_line_of_the_workflow_runs() {
    let workflow = parse_workflow();
    let speedy = speedy_steps(&workflow);
    let fixture = Fixture::new();
    let repo = fixture.path("apt-repo");
    let key_file = fixture.path("ci-key.asc");
    assert_success(&fixture.speedy(&["key", "generate", "--output", key_file.to_str().unwrap()]));
    // The secrets a CI secret store would hold; the passphrase secret does not exist
    // (it expands to ""), and the Spaces credentials and token are unused by a
    // local-directory repository.
    let secrets = [
        (
            "SPEEDY_SIGNING_KEY",
            std::fs::read_to_string(&key_file).unwrap(),
        ),
        ("SPACES_ACCESS_KEY_ID", "ci-test-access".to_owned()),
        ("SPACES_SECRET_ACCESS_KEY", "ci-test-secret".to_owned()),
        ("DIGITALOCEAN_TOKEN", "dop_v1_ci-test-token".to_owned()),
    ];
    let run_when = |ref_: &str| {
        for step in &speedy {
            let runs = match step.condition.as_deref() {
                None => true,
                Some("github.ref == 'refs/heads/main'") => ref_ == "refs/heads/main",
                Some("startsWith(github.ref, 'refs/tags/v')") => ref_.starts_with("refs/tags/v"),
                Some(other) => panic!(
                    "{:?}: a condition this test does not know: {other}",
                    step.name
                ),
            };
            if runs {
                let output = run_line(step, fixture.root(), &repo, &secrets);
                assert_success(&output);
                let text = stdout(&output) + &stderr(&output);
                assert!(!text.contains("ci-test"), "a secret was printed: {text}");
                assert!(!text.contains("PRIVATE KEY"), "the key was printed: {text}");
            }
        }
    };

    // The three services; a repository may publish more (a keyring package).
    const SERVICES: [&str; 3] = ["speedy-app", "speedy-jobs", "speedy-notifier"];

    // A push to main: dev has the three services, none phased.
    run_when("refs/heads/main");
    let release = published(&fixture.path("release.jsonl"));
    assert_eq!(release["suite"], "dev");
    let added: Vec<&str> = release["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(SERVICES.iter().all(|s| added.contains(s)), "{added:?}");
    assert!(release["added"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p.get("phase").is_none()));
    assert!(!fixture.path("promote.jsonl").exists());

    // A version tag: stable has them, unphased, so a fleet of one server takes the
    // release at its next upgrade without anyone raising a phase (issue 24).
    run_when("refs/tags/v1.4.0");
    let promote = published(&fixture.path("promote.jsonl"));
    assert_eq!(promote["suite"], "stable");
    let promoted: Vec<&str> = promote["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        SERVICES.iter().all(|s| promoted.contains(s)),
        "{promoted:?}"
    );
    // And the repository says so itself: no entry of stable is phased.
    let stable = packages_text(&repo, "stable", "amd64");
    for service in SERVICES {
        let entry = stable
            .split("\n\n")
            .find(|entry| entry.starts_with(&format!("Package: {service}\n")))
            .unwrap_or_else(|| panic!("{service} is not in stable: {stable}"));
        assert!(
            !entry.contains("Phased-Update-Percentage:"),
            "a fleet of one would wait for a phase: {entry}"
        );
    }
    let verify = std::fs::read_to_string(fixture.path("verify.jsonl")).unwrap();
    assert!(verify.contains("\"reason\":\"verify\""), "{verify}");
}
