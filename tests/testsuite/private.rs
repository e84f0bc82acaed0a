//! Private repositories (`acl = "private"`; docs/ARCHITECTURE.md,
//! "Private repositories"): nothing is readable anonymously, servers read through the
//! speedy-s3 apt method with a read-only key that `server-setup` gives them, `doctor`
//! checks both, and one publish re-ACLs a repository moved between public and private.
//!
//! The credential tests run against a moto server of their own that checks
//! signatures and IAM policies (`INITIAL_NO_AUTH_ACTION_COUNT`): the shared one takes
//! any key. moto then answers an anonymous GET of a public-read object with HTTP 500
//! (it looks for an Authorization header), so the tests of anonymous reads of public
//! objects use the shared server, which honours ACLs for anonymous reads.

use crate::support::server::{archive_key, fixture_on_a_free_port, BootedServer, SUITE};
use crate::support::*;
use std::path::Path;
use std::process::{Command, Output};

/// The requests moto answers before it checks signatures: the bucket, then a
/// publisher, a reader and the reader's successor (a rotation), each a user, a
/// policy and an access key.
const FREE_REQUESTS: &str = "10";

/// An access key moto made: (id, secret).
type AccessKey = (String, String);

/// One IAM request to moto (free or signed with any key while it does not check).
fn iam(moto: &MotoServer, params: &[(&str, &str)]) -> String {
    let mut form = String::from("Version=2010-05-08");
    for (name, value) in params {
        form.push_str(&format!("&{name}={}", url_encode(value)));
    }
    let output = tool_output(
        Command::new("curl")
            .args([
                "-s",
                "--aws-sigv4",
                "aws:amz:us-east-1:iam",
                "-u",
                "x:x",
                "-d",
            ])
            .arg(&form)
            .arg(format!("{}/", moto.endpoint())),
    );
    assert!(output.status.success(), "IAM {form}: {}", describe(&output));
    stdout(&output)
}

fn url_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn xml_field(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml.find(&open).unwrap_or_else(|| panic!("{name} in {xml}")) + open.len();
    let end = xml[start..].find('<').expect("closing tag") + start;
    xml[start..end].to_owned()
}

/// A user with `actions` on `bucket` and an access key of theirs.
fn user_with_key(moto: &MotoServer, user: &str, bucket: &str, actions: &str) -> AccessKey {
    iam(moto, &[("Action", "CreateUser"), ("UserName", user)]);
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":{actions},"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}}]}}"#
    );
    iam(
        moto,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", user),
            ("PolicyName", "speedy"),
            ("PolicyDocument", &policy),
        ],
    );
    let created = iam(moto, &[("Action", "CreateAccessKey"), ("UserName", user)]);
    (
        xml_field(&created, "AccessKeyId"),
        xml_field(&created, "SecretAccessKey"),
    )
}

/// A moto server that checks credentials, its bucket, a publisher's key (everything
/// on the bucket) and a reader's (GetObject and ListBucket only, as a Spaces key with
/// the `read` permission).
struct AuthenticatedBucket {
    moto: MotoServer,
    bucket: String,
    publisher: AccessKey,
    reader: AccessKey,
    /// The read key that replaces `reader` in a rotation.
    next_reader: AccessKey,
}

impl AuthenticatedBucket {
    fn new() -> Self {
        let moto = MotoServer::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", FREE_REQUESTS)]);
        let bucket = "speedy-private".to_owned();
        moto.create_bucket(&bucket);
        let publisher = user_with_key(&moto, "publisher", &bucket, r#""s3:*""#);
        let reader = user_with_key(
            &moto,
            "server",
            &bucket,
            r#"["s3:GetObject","s3:ListBucket"]"#,
        );
        let next_reader = user_with_key(
            &moto,
            "server-next",
            &bucket,
            r#"["s3:GetObject","s3:ListBucket"]"#,
        );
        AuthenticatedBucket {
            moto,
            bucket,
            publisher,
            reader,
            next_reader,
        }
    }

    /// cargo speedy on the private bucket with the publisher's key in its environment
    /// and `extra_env` besides.
    fn speedy(
        &self,
        fixture: &Fixture,
        args: &[&str],
        key: &Path,
        extra_env: &[(&str, &str)],
    ) -> Output {
        let flags = self.moto.flags(&self.bucket);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        all.extend(["--acl", "private", "--key-file", key.to_str().unwrap()]);
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", self.publisher.0.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.publisher.1.as_str()),
        ];
        env.extend_from_slice(extra_env);
        fixture.speedy_env(&all, &env)
    }

    fn reader_env(&self) -> [(&str, &str); 2] {
        [
            ("SPEEDY_READ_ACCESS_KEY_ID", self.reader.0.as_str()),
            ("SPEEDY_READ_SECRET_ACCESS_KEY", self.reader.1.as_str()),
        ]
    }

    fn store(&self) -> cargo_speedy::store::s3::S3Store {
        use cargo_speedy::store::s3::{Credentials, S3Config, S3Store};
        let mut config = S3Config::spaces(&self.bucket, "us-east-1");
        config.endpoint = self.moto.endpoint();
        config.path_style = true;
        config.public_read = false;
        S3Store::new(
            config,
            Credentials::new(&self.publisher.0, &self.publisher.1),
        )
        .expect("an S3 store")
    }
}

fn installed(server: &BootedServer, name: &str) -> String {
    server.exec_ok(&["dpkg-query", "-W", "-f", "${Version}", name])
}

/// `apt-get update` while every process's command line is read again and again:
/// its output and every command line seen.
fn update_watching_command_lines(server: &BootedServer) -> (bool, String) {
    let output = server.sh(
        "apt-get update >/tmp/update.out 2>&1 & pid=$!; \
         while kill -0 $pid 2>/dev/null; do \
           for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' <\"$f\" 2>/dev/null; echo; done; \
         done >/tmp/cmdlines; wait $pid; status=$?; cat /tmp/update.out /tmp/cmdlines; exit $status",
    );
    (
        output.status.success(),
        format!("{}{}", stdout(&output), stderr(&output)),
    )
}

/// The whole path on a booted Debian server: a private release is refused to anyone
/// without a key, `server-setup` refuses without the read credential and with it
/// makes a server that installs, upgrades and rolls back through the authenticated
/// transport, apt still refuses a tampered InRelease, the credential file is root's
/// only and the secret appears in no command line, log or apt output; a wrong or
/// missing credential is an apt error that names the repository.
#[test]
fn a_private_repository_is_read_by_servers_with_their_read_credential_only() {
    let repo = AuthenticatedBucket::new();
    let (fixture, port) = fixture_on_a_free_port();
    let (_keys, key, _keyring) = archive_key(&fixture);
    let release = |version: &str| {
        fixture.set_version(version);
        assert_success(&repo.speedy(
            &fixture,
            &["release", "--quiet", "--suite", "dev"],
            &key,
            &[],
        ));
    };
    release("1.4.0");

    // Nothing is readable anonymously: every object answers 403.
    let store = repo.store();
    let objects = bucket_contents(&store);
    let deb = objects
        .keys()
        .find(|k| k.starts_with("pool/") && k.ends_with(".deb"))
        .expect("a pool .deb");
    for path in [
        "dists/dev/InRelease",
        "dists/dev/main/binary-amd64/Packages.gz",
        deb,
        "archive-keyring.gpg",
    ] {
        assert!(objects.contains_key(path), "{path} published: {objects:?}");
    }
    for path in objects.keys() {
        let (status, text) = repo.moto.anonymous_get(&format!("{}/{path}", repo.bucket));
        assert_eq!(status, 403, "anonymous GET {path}:\n{text}");
    }
    // The publisher reads it: list and verify.
    let listed = repo.speedy(&fixture, &["list"], &key, &[]);
    assert_success(&listed);
    assert!(
        stdout(&listed).contains("speedy-app"),
        "{}",
        describe(&listed)
    );
    assert_success(&repo.speedy(&fixture, &["verify"], &key, &[]));

    // doctor: anonymous reads refused; the read key reads and cannot write; a key
    // that can write is no read credential.
    let doctor = repo.speedy(&fixture, &["doctor"], &key, &repo.reader_env());
    assert_success(&doctor);
    let text = stdout(&doctor);
    assert!(
        text.contains("objects refused to anonymous readers"),
        "{text}"
    );
    assert!(text.contains("reads dists/dev/InRelease"), "{text}");
    assert!(text.contains("cannot write"), "{text}");
    let writer = [
        ("SPEEDY_READ_ACCESS_KEY_ID", repo.publisher.0.as_str()),
        ("SPEEDY_READ_SECRET_ACCESS_KEY", repo.publisher.1.as_str()),
    ];
    let doctor = repo.speedy(&fixture, &["doctor"], &key, &writer);
    assert!(!doctor.status.success(), "{}", describe(&doctor));
    assert!(
        stdout(&doctor).contains("it can write to the bucket"),
        "{}",
        describe(&doctor)
    );

    // server-setup refuses without the read credential, and passing --url.
    let setup_args = ["server-setup", "--role", "single", "--db-host", "127.0.0.5"];
    let refused = repo.speedy(&fixture, &setup_args, &key, &[]);
    assert_fails_with(
        &refused,
        "is private (acl = \"private\"): its servers need a read-only key",
    );
    let with_url = [&setup_args[..], &["--url", "http://127.0.0.1:1/"]].concat();
    let refused = repo.speedy(&fixture, &with_url, &key, &repo.reader_env());
    assert_fails_with(&refused, "--url: ");
    let setup = repo.speedy(&fixture, &setup_args, &key, &repo.reader_env());
    assert_success(&setup);
    let script = stdout(&setup);
    assert!(
        !stderr(&setup).contains(&repo.reader.1),
        "the secret in the messages: {}",
        stderr(&setup)
    );

    let server = BootedServer::boot(SUITE);
    server.write_file("/root/speedy-server-setup", script.as_bytes(), 0o700);
    let first = server.exec(&["/root/speedy-server-setup"]);
    assert!(first.status.success(), "server-setup: {}", describe(&first));
    let run_output = describe(&first);
    assert!(
        !run_output.contains(&repo.reader.1),
        "the secret in the setup's output"
    );
    let conf = format!("/etc/apt/speedy-s3/{}.conf", repo.bucket);
    assert_eq!(
        server.exec_ok(&["stat", "-c", "%U:%G %a", &conf]).trim(),
        "root:root 600",
        "the credential file"
    );
    let sources = server.exec_ok(&["cat", "/etc/apt/sources.list.d/speedy.sources"]);
    assert!(
        sources.contains(&format!("URIs: speedy-s3://{}/", repo.bucket)),
        "{sources}"
    );
    server.wait_active("speedy-app.service");
    assert_eq!(installed(&server, "speedy-app"), "1.4.0-1");
    assert_eq!(
        server
            .http("GET", &format!("http://127.0.0.1:{port}/healthz"))
            .status,
        200
    );

    // Upgrade and rollback, through the method.
    release("1.4.1");
    let (updated, seen) = update_watching_command_lines(&server);
    assert!(updated, "apt-get update: {seen}");
    assert!(
        seen.contains(&format!("speedy-s3://{}", repo.bucket)),
        "{seen}"
    );
    assert!(
        !seen.contains(&repo.reader.1),
        "the secret in a command line or apt's output"
    );
    let upgrade = server.apt_get(&["upgrade"]);
    assert!(!upgrade.contains(&repo.reader.1));
    assert_eq!(server.app_version(), "speedy-app 1.4.1");
    let rolled = repo.speedy(&fixture, &["rollback", "--suite", "dev"], &key, &[]);
    assert_success(&rolled);
    server.apt_update();
    let downgrade = server.apt_get(&["upgrade"]);
    assert!(downgrade.contains("DOWNGRADED"), "{downgrade}");
    assert_eq!(server.app_version(), "speedy-app 1.4.0");
    assert_eq!(installed(&server, "speedy-notifier"), "1.4.0-1");
    server.wait_active("speedy-app.service");

    // The secret is in no log of the server.
    let logs = server.exec_input(
        &["sh", "-c", "journalctl --no-pager -o cat >/tmp/journal.txt; grep -rlF -f - /var/log /tmp/journal.txt /tmp/cmdlines /tmp/update.out"],
        repo.reader.1.as_bytes(),
    );
    assert_eq!(
        stdout(&logs),
        "",
        "files holding the secret: {}",
        describe(&logs)
    );

    // apt's signature checks still apply: a tampered InRelease (a later second, so
    // If-Modified-Since does not hide it) is refused.
    let in_release = store
        .get("dists/dev/InRelease")
        .expect("get")
        .expect("InRelease");
    let text = String::from_utf8(in_release.clone()).expect("text");
    let tampered = text.replacen("Suite: dev", "Suite: dew", 1);
    assert_ne!(tampered, text);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let options = cargo_speedy::publish::put_options("dists/dev/InRelease");
    use cargo_speedy::store::{Body, Store};
    store
        .put(
            "dists/dev/InRelease",
            Body::Bytes(tampered.as_bytes()),
            &options,
        )
        .expect("tamper");
    let refused = server.apt(&["update"]);
    let refused_text = describe(&refused);
    assert!(
        refused_text.contains("speedy-s3://") && refused_text.to_lowercase().contains("signature"),
        "a tampered InRelease: {refused_text}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    store
        .put("dists/dev/InRelease", Body::Bytes(&in_release), &options)
        .expect("restore");

    // A wrong credential, then none: apt names the repository and the reason.
    let wrong = server
        .exec_ok(&["cat", &conf])
        .replace(&repo.reader.1, "wrong-secret");
    server.write_file(&conf, wrong.as_bytes(), 0o600);
    let failed = server.apt(&["update"]);
    let failed_text = describe(&failed);
    assert!(
        failed_text.contains(&format!("speedy-s3://{}", repo.bucket))
            && failed_text.contains("HTTP 403")
            && failed_text.contains(&conf),
        "a wrong credential: {failed_text}"
    );
    server.exec_ok(&["rm", &conf]);
    let failed = server.apt(&["update"]);
    let failed_text = describe(&failed);
    assert!(
        failed_text.contains(&format!("speedy-s3://{}", repo.bucket))
            && failed_text.contains("no read credential for the private repository"),
        "no credential: {failed_text}"
    );

    // The cloud-init form's script holds no key: without the file cloud-init writes
    // it refuses, naming the file; with it (the file as write_files gives it) it
    // sets the server up again.
    let user_data = repo.speedy(
        &fixture,
        &[&setup_args[..], &["--format", "cloud-init"]].concat(),
        &key,
        &repo.reader_env(),
    );
    assert_success(&user_data);
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("user-data.yaml");
    std::fs::write(&file, stdout(&user_data)).expect("write the user data");
    let (path, content, _command) = crate::fleet::cloud_init_script(&file);
    assert!(!content.contains(&repo.reader.1), "the key in the script");
    server.write_file(&path, content.as_bytes(), 0o700);
    let refused = server.exec(&[path.as_str()]);
    assert!(
        !refused.status.success() && stderr(&refused).contains(&format!("{conf} is missing")),
        "the cloud-init script without its credential file: {}",
        describe(&refused)
    );
    let good = wrong.replace("wrong-secret", &repo.reader.1);
    server.write_file(&conf, good.as_bytes(), 0o600);
    server.exec_ok(&[path.as_str()]);
    server.apt_update();

    // Rotation: the setup run again with the next key replaces the file (still
    // root's only) and apt reads with it.
    let next_env = [
        ("SPEEDY_READ_ACCESS_KEY_ID", repo.next_reader.0.as_str()),
        ("SPEEDY_READ_SECRET_ACCESS_KEY", repo.next_reader.1.as_str()),
    ];
    let rotated = repo.speedy(&fixture, &setup_args, &key, &next_env);
    assert_success(&rotated);
    server.write_file("/root/speedy-server-setup", &rotated.stdout, 0o700);
    server.exec_ok(&["/root/speedy-server-setup"]);
    let now = server.exec_ok(&["cat", &conf]);
    assert!(
        now.contains(&format!("access_key_id={}\n", repo.next_reader.0))
            && !now.contains(&repo.reader.0),
        "the rotated key file"
    );
    assert_eq!(
        server.exec_ok(&["stat", "-c", "%U:%G %a", &conf]).trim(),
        "root:root 600"
    );
    server.apt_update();
    drop(server);
}

/// A public repository made private is re-ACL'd by its next publish, and back;
/// `doctor` names an object with the other ACL.
#[test]
fn one_publish_re_acls_a_repository_moved_between_public_and_private() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-reacl");
    let fixture = Fixture::new();
    let (_keys, key, _keyring) = archive_key(&fixture);
    let speedy = |args: &[&str], acl: &str| {
        let flags = moto.flags(&bucket);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(flags.iter().map(String::as_str));
        all.extend(["--acl", acl, "--key-file", key.to_str().unwrap()]);
        fixture.speedy_env(&all, &TEST_CREDENTIALS)
    };
    let anonymous = |path: &str| moto.anonymous_get(&format!("{bucket}/{path}")).0;
    let apt_readable = |key: &str| !key.starts_with(".speedy/");

    fixture.set_version("1.4.0");
    assert_success(&speedy(&["release", "--quiet"], "public-read"));
    let store = moto.store(&bucket);
    let public_objects: Vec<String> = bucket_contents(&store).into_keys().collect();
    assert!(public_objects.iter().any(|k| k.starts_with("pool/")));
    for path in public_objects.iter().filter(|k| apt_readable(k)) {
        assert_eq!(anonymous(path), 200, "{path} before the move");
    }

    // acl = "private": the next release leaves nothing readable, old objects included.
    fixture.set_version("1.4.1");
    let moved = speedy(&["release", "--quiet"], "private");
    assert_success(&moved);
    for path in bucket_contents(&store).keys() {
        assert_eq!(anonymous(path), 403, "{path} after the move to private");
    }
    let doctor = speedy(&["doctor"], "private");
    assert!(
        stdout(&doctor).contains("objects refused to anonymous readers"),
        "{}",
        describe(&doctor)
    );

    // One object public again (by hand, say): doctor fails and names it.
    let deb = public_objects
        .iter()
        .find(|k| k.ends_with(".deb"))
        .expect("a .deb");
    let body = store.get(deb).expect("get").expect("deb");
    use cargo_speedy::store::Store;
    store
        .set_acl(
            deb,
            &cargo_speedy::store::PutOptions {
                public: true,
                ..cargo_speedy::publish::put_options(deb)
            },
        )
        .expect("set the ACL");
    assert_eq!(store.get(deb).expect("get").expect("deb"), body);
    assert_eq!(anonymous(deb), 200);
    let doctor = speedy(&["doctor"], "private");
    assert!(!doctor.status.success(), "{}", describe(&doctor));
    assert!(
        stdout(&doctor).contains("objects are readable by anyone")
            && stdout(&doctor).contains(deb.as_str()),
        "{}",
        describe(&doctor)
    );

    // Back to public: doctor warns of what is still private, one release fixes it.
    let doctor = speedy(&["doctor"], "public-read");
    assert!(
        stdout(&doctor).contains("still have the private ACL"),
        "{}",
        describe(&doctor)
    );
    fixture.set_version("1.4.2");
    assert_success(&speedy(&["release", "--quiet"], "public-read"));
    for path in bucket_contents(&store).keys() {
        let expected = if apt_readable(path) { 200 } else { 403 };
        assert_eq!(anonymous(path), expected, "{path} after the move back");
    }
}

/// The read credential's bad input: one variable without the other, a value no key
/// has, an unreadable or incomplete file; each is named, never shown, and nothing
/// is printed as a script.
#[test]
fn server_setup_refuses_a_bad_read_credential_and_names_it() {
    let moto = MotoServer::shared();
    let bucket = moto.new_bucket("speedy-readcred");
    let fixture = Fixture::new();
    let (_keys, key, _keyring) = archive_key(&fixture);
    let setup = |extra: &[&str], env: &[(&str, &str)]| {
        let flags = moto.flags(&bucket);
        let mut all = vec!["server-setup", "--role", "single", "--db-host", "127.0.0.5"];
        all.extend(flags.iter().map(String::as_str));
        all.extend(["--acl", "private", "--key-file", key.to_str().unwrap()]);
        all.extend_from_slice(extra);
        let mut full = TEST_CREDENTIALS.to_vec();
        full.extend_from_slice(env);
        fixture.speedy_env(&all, &full)
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().unwrap().to_owned()
    };
    let incomplete = file("incomplete", "SPEEDY_READ_ACCESS_KEY_ID=DO00ABC\n");
    let unknown = file("unknown", "AWS_SECRET=x\n");
    let quoted = file(
        "quoted",
        "SPEEDY_READ_ACCESS_KEY_ID=DO00ABC\nSPEEDY_READ_SECRET_ACCESS_KEY=se\"cret-value\n",
    );
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    for (extra, env, message) in [
        (
            vec![],
            vec![("SPEEDY_READ_ACCESS_KEY_ID", "DO00ABC")],
            "SPEEDY_READ_SECRET_ACCESS_KEY is not set, but SPEEDY_READ_ACCESS_KEY_ID is",
        ),
        (
            vec![],
            vec![
                ("SPEEDY_READ_ACCESS_KEY_ID", "DO0:0"),
                ("SPEEDY_READ_SECRET_ACCESS_KEY", "s"),
            ],
            "SPEEDY_READ_ACCESS_KEY_ID holds a character",
        ),
        (
            vec!["--read-credential-file", incomplete.as_str()],
            vec![],
            "has no SPEEDY_READ_SECRET_ACCESS_KEY= line",
        ),
        (
            vec!["--read-credential-file", unknown.as_str()],
            vec![],
            "\"AWS_SECRET\" is not SPEEDY_READ_ACCESS_KEY_ID",
        ),
        (
            vec!["--read-credential-file", quoted.as_str()],
            vec![],
            "line 2 SPEEDY_READ_SECRET_ACCESS_KEY: holds a character",
        ),
        (
            vec!["--read-credential-file", missing.as_str()],
            vec![],
            "cannot be read",
        ),
    ] {
        let output = setup(&extra, &env);
        assert_fails_with(&output, message);
        assert_eq!(stdout(&output), "", "no script for bad input");
        assert!(
            !describe(&output).contains("cret-value"),
            "a value shown: {}",
            describe(&output)
        );
    }
    // A good file: the credential is in the script, which writes it root's only.
    let flags = moto.flags(&bucket);
    let mut release = vec!["release", "--acl", "private"];
    release.extend(flags.iter().map(String::as_str));
    release.extend(["--key-file", key.to_str().unwrap()]);
    let released = fixture.speedy_env(&release, &TEST_CREDENTIALS);
    assert_success(&released);
    // Its next step is server-setup with the read key, not a keyring to curl.
    let next = describe(&released);
    assert!(
        next.contains("(a private repository: with the bucket's read-only key"),
        "{next}"
    );
    assert!(!next.contains("curl -fsSL"), "{next}");
    let good = file(
        "good",
        "# the servers' key\nSPEEDY_READ_ACCESS_KEY_ID=DO00READER\nSPEEDY_READ_SECRET_ACCESS_KEY=reader/secret+value=\n",
    );
    let output = setup(&["--read-credential-file", &good], &[]);
    assert_success(&output);
    let script = stdout(&output);
    assert!(script.contains("access_key_id=DO00READER"), "{script}");
    assert!(
        script.contains(&format!("URIs: speedy-s3://{bucket}/")),
        "{script}"
    );
    // The private section and the apt method it installs pass shellcheck.
    let path = dir.path().join("setup.sh");
    std::fs::write(&path, &script).expect("write the script");
    run(
        "shellcheck",
        &["--shell=sh", "--severity=style", path.to_str().unwrap()],
    );
    let method = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/apt-method-speedy-s3");
    run(
        "shellcheck",
        &["--severity=style", method.to_str().unwrap()],
    );
    // cloud-init: the credential file in write_files, 0600 root, not in the script.
    let output = setup(
        &["--read-credential-file", &good, "--format", "cloud-init"],
        &[],
    );
    assert_success(&output);
    let user_data = stdout(&output);
    assert_eq!(
        user_data.matches("reader/secret+value=").count(),
        1,
        "{user_data}"
    );
    let file = dir.path().join("user-data.yaml");
    std::fs::write(&file, &user_data).expect("write the user data");
    crate::fleet::assert_valid_cloud_config(&file);
    // What cloud-init writes: the script (first, as for a public repository) and the
    // credential file, root's only, with the key.
    let program = r#"
import json, sys, yaml
data = yaml.safe_load(open(sys.argv[1]))
print(json.dumps([[e["path"], e["owner"], e["permissions"], e["content"]] for e in data["write_files"]]))
"#;
    let parsed = tool_output(Command::new("python3").args(["-c", program]).arg(&file));
    assert!(parsed.status.success(), "{}", describe(&parsed));
    let files: Vec<[String; 4]> = serde_json::from_str(&stdout(&parsed)).expect("json");
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(files[0][0], "/usr/local/sbin/speedy-server-setup");
    assert!(
        !files[0][3].contains("reader/secret+value="),
        "the key is not in the script"
    );
    assert_eq!(
        files[1][..3],
        [
            format!("/etc/apt/speedy-s3/{bucket}.conf"),
            "root:root".to_owned(),
            "0600".to_owned()
        ]
    );
    assert!(
        files[1][3]
            .contains("\naccess_key_id=DO00READER\nsecret_access_key=reader/secret+value=\n"),
        "{}",
        files[1][3]
    );
}
