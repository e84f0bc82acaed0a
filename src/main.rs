//! `cargo speedy`: clap definitions and output. The work happens in the library.

use cargo_speedy::listener::{BuiltDeb, Listener, SilentListener};
use cargo_speedy::package::{self, BuildOptions, Compression};
use cargo_speedy::publish::lock::LockOptions;
use cargo_speedy::publish::{self, verify, Publish, PublishReport};
use cargo_speedy::repo_config::{self, Destination, RepoConfig, SpacesMetadata};
use cargo_speedy::sign::{KeyAlgorithm, KeyParams, PublicKey, SigningKey};
use cargo_speedy::store::fs::FsStore;
use cargo_speedy::store::s3::{CheckStatus, Credentials, S3Store};
use cargo_speedy::store::Store;
use cargo_speedy::workspace::{LockingFlags, WorkspaceInfo};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::error::Error;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// Cargo runs `cargo-speedy speedy <args>`; the first argument is the subcommand name.
#[derive(Parser)]
#[command(name = "cargo", bin_name = "cargo")]
enum CargoCli {
    Speedy(SpeedyCli),
}

#[derive(Args)]
#[command(
    version,
    about = "Build the services of a workspace into signed Debian packages and publish them to an apt repository",
    long_about = None
)]
struct SpeedyCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a .deb per service into target/speedy/debs/
    Build(BuildArgs),
    /// Publish .debs into a suite of the apt repository
    Publish(PublishArgs),
    /// Build, sign and publish: `build` then `publish`
    Release(ReleaseArgs),
    /// Publish the newest packages of one suite into another (index entries only, no bytes)
    Promote(PromoteArgs),
    /// Show the suites of the repository and their packages
    List(RepoReadArgs),
    /// Check every signature, index hash and pool file of the repository
    Verify(RepoReadArgs),
    /// Create and export signing keys
    #[command(subcommand)]
    Key(KeyCommand),
    /// Probe the configured Spaces bucket: credentials, conditional writes, checksum
    /// headers, anonymous public reads
    Doctor(DoctorArgs),
}

#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    repo: RepoArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MessageFormat {
    Human,
    Json,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompressionArg {
    Xz,
    Gzip,
    XzFast,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AlgorithmArg {
    Ed25519,
    Rsa3072,
    Rsa4096,
}

#[derive(Args)]
struct GlobalArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH", global = true)]
    manifest_path: Option<PathBuf>,
    /// Assert that Cargo.lock will remain unchanged
    #[arg(long, global = true)]
    locked: bool,
    /// Run without accessing the network
    #[arg(long, global = true)]
    offline: bool,
    /// Equivalent to specifying both --locked and --offline
    #[arg(long, global = true)]
    frozen: bool,
    /// Use verbose output
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,
    /// Print only errors and results
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Coloring
    #[arg(
        long,
        value_enum,
        value_name = "WHEN",
        default_value = "auto",
        global = true
    )]
    color: ColorChoice,
    /// Output format for messages
    #[arg(
        long,
        value_enum,
        value_name = "FMT",
        default_value = "human",
        global = true
    )]
    message_format: MessageFormat,
}

#[derive(Args, Clone)]
struct PackageArgs {
    /// Package(s) to build (default: every package with [package.metadata.speedy])
    #[arg(short = 'p', long = "package", value_name = "SPEC")]
    packages: Vec<String>,
    /// Build for the target triple
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
    /// Build with the given profile
    #[arg(long, value_name = "PROFILE-NAME", default_value = "release")]
    profile: String,
    /// Package the binaries already built instead of running `cargo build`
    #[arg(long)]
    no_build: bool,
    /// Compression of the archive members
    #[arg(long, value_enum, default_value = "xz")]
    compression: CompressionArg,
    /// Do not add a debsigs signature to the .debs even when a key is configured
    #[arg(long)]
    no_sign: bool,
}

#[derive(Args, Clone)]
struct KeyArgs {
    /// The armored secret signing key (else $SPEEDY_SIGNING_KEY, $SPEEDY_SIGNING_KEY_FILE,
    /// or `key-file` in [workspace.metadata.speedy.signing]); a passphrase comes from
    /// $SPEEDY_SIGNING_PASSPHRASE
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct RepoArgs {
    /// The local-directory repository (default: `dir` in [workspace.metadata.speedy.repo],
    /// else target/speedy/repo); wins over a configured Spaces bucket
    #[arg(long, value_name = "DIR")]
    repo_dir: Option<PathBuf>,
    /// Publish to this Spaces/S3 bucket (else `bucket` in [workspace.metadata.speedy.repo.spaces]);
    /// credentials come from SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY or AWS_*
    #[arg(long, value_name = "NAME", conflicts_with = "repo_dir")]
    bucket: Option<String>,
    /// The Spaces region, e.g. nyc3
    #[arg(long)]
    region: Option<String>,
    /// The S3 endpoint (default https://<region>.digitaloceanspaces.com)
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// Keep the repository below this prefix in the bucket
    #[arg(long)]
    prefix: Option<String>,
    /// Bucket addressing: path or virtual
    #[arg(long, value_name = "STYLE")]
    addressing: Option<String>,
    /// The URL servers use for the repository (bucket or CDN)
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Object ACL: public-read or private
    #[arg(long)]
    acl: Option<String>,
    /// When to send request checksums: when-required or when-supported
    #[arg(long)]
    checksums: Option<String>,
}

impl RepoArgs {
    fn spaces(&self) -> SpacesMetadata {
        SpacesMetadata {
            bucket: self.bucket.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            prefix: self.prefix.clone(),
            addressing: self.addressing.clone(),
            public_url: self.public_url.clone(),
            acl: self.acl.clone(),
            checksums: self.checksums.clone(),
            multipart_threshold: None,
            parallelism: None,
        }
    }
}

#[derive(Args)]
struct BuildArgs {
    #[command(flatten)]
    package: PackageArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Print the rendered units, timers, sysusers entries and maintainer scripts
    /// without building anything
    #[arg(long)]
    explain: bool,
}

#[derive(Args, Clone)]
struct PublishOptionsArgs {
    /// The suite to publish to (default: `default-suite`, else the first configured suite)
    #[arg(long)]
    suite: Option<String>,
    #[command(flatten)]
    control: PublishControlArgs,
}

/// How a write to the repository behaves, for every command that writes one.
#[derive(Args, Clone)]
struct PublishControlArgs {
    /// Print what would be uploaded, switched and deleted, and change nothing
    #[arg(long)]
    dry_run: bool,
    /// Wait up to this many seconds for another publisher's lock
    #[arg(long, value_name = "SECONDS")]
    wait_for_lock: Option<u64>,
    /// Remove a stale lock left by a publish that died
    #[arg(long)]
    break_lock: bool,
}

#[derive(Args)]
struct PublishArgs {
    /// The .debs to publish (default: every .deb in target/speedy/debs)
    debs: Vec<PathBuf>,
    #[command(flatten)]
    options: PublishOptionsArgs,
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct ReleaseArgs {
    #[command(flatten)]
    package: PackageArgs,
    #[command(flatten)]
    options: PublishOptionsArgs,
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct PromoteArgs {
    /// The suite to take the packages from
    #[arg(long)]
    from: String,
    /// The suite to publish them to
    #[arg(long)]
    to: String,
    /// Promote only these packages (default: all, the newest version of each)
    #[arg(short = 'p', long = "package", value_name = "NAME")]
    packages: Vec<String>,
    #[command(flatten)]
    control: PublishControlArgs,
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct RepoReadArgs {
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
    /// Verify against this public key (binary or armored) instead of the signing key
    #[arg(long, value_name = "PATH", conflicts_with = "key_file")]
    keyring: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a signing key (OpenPGP v4); the passphrase, if any, comes from $SPEEDY_SIGNING_PASSPHRASE
    Generate {
        /// Where to write the armored secret key (created 0600, never overwritten)
        #[arg(long, value_name = "PATH")]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "ed25519")]
        algorithm: AlgorithmArg,
        /// The key's user id
        #[arg(long, default_value = "Speedy apt repository <ops@speedy.example>")]
        user_id: String,
    },
    /// Export the public key: a binary keyring for /usr/share/keyrings, or armored (.asc)
    Export {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        repo: RepoArgs,
        /// The file to write; armored when it ends in .asc or with --armor
        #[arg(long, value_name = "PATH")]
        output: PathBuf,
        #[arg(long)]
        armor: bool,
    },
    /// Print the debsig-verify policy for .debs signed with this key, and where it goes
    DebsigPolicy {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        repo: RepoArgs,
    },
}

/// Human lines on stderr (results on stdout), or one JSON object per line on stdout.
struct Reporter {
    format: MessageFormat,
    verbose: bool,
    quiet: bool,
    color: bool,
    bar: std::sync::Mutex<Option<indicatif::ProgressBar>>,
}

impl Reporter {
    fn new(global: &GlobalArgs) -> Self {
        let color = match global.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        Reporter {
            format: global.message_format,
            verbose: global.verbose,
            quiet: global.quiet,
            color,
            bar: std::sync::Mutex::new(None),
        }
    }

    fn json(&self, value: serde_json::Value) {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{value}");
    }

    fn human(&self, label: &str, style: &str, message: &str) {
        let mut stderr = std::io::stderr().lock();
        if self.color {
            let _ = writeln!(stderr, "\x1b[{style}m{label:>12}\x1b[0m {message}");
        } else {
            let _ = writeln!(stderr, "{label:>12} {message}");
        }
    }

    /// A result: stdout in both formats.
    fn result(&self, reason: &str, human: &str, value: serde_json::Value) {
        match self.format {
            MessageFormat::Json => {
                let mut value = value;
                if let Some(object) = value.as_object_mut() {
                    object.insert("reason".into(), reason.into());
                }
                self.json(value);
            }
            MessageFormat::Human => {
                let mut stdout = std::io::stdout().lock();
                let _ = write!(stdout, "{human}");
            }
        }
    }

    fn error(&self, error: &dyn Error) {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            // thiserror's `transparent` repeats the message of the cause.
            let text = cause.to_string();
            if !message.contains(&text) {
                message.push_str(&format!("\n  caused by: {text}"));
            }
            source = cause.source();
        }
        match self.format {
            MessageFormat::Json => {
                self.json(serde_json::json!({ "reason": "error", "message": message }))
            }
            MessageFormat::Human => {
                let mut stderr = std::io::stderr().lock();
                if self.color {
                    let _ = writeln!(stderr, "\x1b[1;31merror\x1b[0m: {message}");
                } else {
                    let _ = writeln!(stderr, "error: {message}");
                }
            }
        }
    }
}

impl Listener for Reporter {
    fn warning(&self, message: &str) {
        match self.format {
            MessageFormat::Json => {
                self.json(serde_json::json!({ "reason": "warning", "message": message }))
            }
            MessageFormat::Human => self.human("warning", "1;33", message),
        }
    }

    fn info(&self, message: &str) {
        if self.quiet {
            return;
        }
        match self.format {
            MessageFormat::Json => {
                self.json(serde_json::json!({ "reason": "info", "message": message }))
            }
            MessageFormat::Human => {
                let (label, rest) = message.split_once(' ').unwrap_or((message, ""));
                self.human(label, "1;32", rest);
            }
        }
    }

    fn detail(&self, message: &str) {
        if self.verbose {
            match self.format {
                MessageFormat::Json => {
                    self.json(serde_json::json!({ "reason": "detail", "message": message }))
                }
                MessageFormat::Human => self.human("", "2", message),
            }
        }
    }

    fn transfer_start(&self, total_bytes: u64) {
        if self.quiet || self.format == MessageFormat::Json || !std::io::stderr().is_terminal() {
            self.info(&format!("Uploading {total_bytes} bytes of packages"));
            return;
        }
        let bar = indicatif::ProgressBar::new(total_bytes);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>12.green.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("Uploading");
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    fn transfer_progress(&self, bytes: u64) {
        if let Ok(slot) = self.bar.lock() {
            if let Some(bar) = slot.as_ref() {
                bar.inc(bytes);
            }
        }
    }

    fn transfer_finish(&self) {
        if let Ok(mut slot) = self.bar.lock() {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }

    fn deb_built(&self, deb: &BuiltDeb) {
        match self.format {
            MessageFormat::Json => {
                let mut value = serde_json::to_value(deb).unwrap_or_default();
                if let Some(object) = value.as_object_mut() {
                    object.insert("reason".into(), "deb-built".into());
                }
                self.json(value);
            }
            MessageFormat::Human => {
                if !self.quiet {
                    self.human(
                        "Finished",
                        "1;32",
                        &format!("{} ({} bytes)", deb.path.display(), deb.size),
                    );
                }
                println!("{}", deb.path.display());
            }
        }
    }
}

type CliResult = Result<ExitCode, Box<dyn Error>>;

fn locking(global: &GlobalArgs) -> LockingFlags {
    LockingFlags {
        locked: global.locked,
        offline: global.offline,
        frozen: global.frozen,
    }
}

fn build_options(global: &GlobalArgs, args: &PackageArgs) -> BuildOptions {
    let mut cargo_args = Vec::new();
    if global.quiet || global.message_format == MessageFormat::Json {
        cargo_args.push("--quiet".to_owned());
    }
    if global.verbose {
        cargo_args.push("--verbose".to_owned());
    }
    cargo_args.push(format!(
        "--color={}",
        match global.color {
            ColorChoice::Auto => "auto",
            ColorChoice::Always => "always",
            ColorChoice::Never => "never",
        }
    ));
    BuildOptions {
        manifest_path: global.manifest_path.clone(),
        packages: args.packages.clone(),
        target: args.target.clone(),
        profile: args.profile.clone(),
        locking: locking(global),
        no_build: args.no_build,
        compression: match args.compression {
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::XzFast => Compression::XzFast,
        },
        cargo_args,
    }
}

/// The workspace's repository settings, with `--repo-dir` applied.
fn repo_config(
    global: &GlobalArgs,
    repo: &RepoArgs,
) -> Result<(WorkspaceInfo, RepoConfig), Box<dyn Error>> {
    let info = WorkspaceInfo::load(global.manifest_path.as_deref(), locking(global))?;
    let mut config = RepoConfig::resolve(
        &info.metadata,
        &info.root,
        &info.root_manifest,
        &info.target_dir,
    )?;
    if let Some(dir) = &repo.repo_dir {
        config.dir = dir.clone();
    }
    Ok((info, config))
}

/// Where the repository is, from the settings and the flags.
fn destination(config: &RepoConfig, repo: &RepoArgs) -> Result<Destination, Box<dyn Error>> {
    Ok(config.destination(repo.repo_dir.as_deref(), repo.spaces())?)
}

fn open_store(destination: &Destination) -> Result<Box<dyn Store>, Box<dyn Error>> {
    Ok(match destination {
        Destination::Local(dir) => Box::new(FsStore::new(dir)),
        Destination::Spaces { config, .. } => {
            Box::new(S3Store::new(config.clone(), Credentials::from_env()?)?)
        }
    })
}

/// The signing key: configured, or for a local-directory repository the development key.
fn repo_signing_key(
    key: &KeyArgs,
    config: &RepoConfig,
    destination: &Destination,
    reporter: &Reporter,
) -> Result<SigningKey, Box<dyn Error>> {
    let dev_key = match destination {
        Destination::Local(_) => Some(config.dev_key_path()),
        Destination::Spaces { .. } => None,
    };
    let (signing_key, source) = repo_config::find_signing_key(
        key.key_file.as_deref(),
        config.key_file.as_deref(),
        dev_key.as_deref(),
    )?
    .ok_or_else(|| repo_config::KeyError::NotConfigured {
        destination: destination.describe(),
    })?;
    repo_config::warn_about_dev_key(&source, reporter);
    reporter.detail(&format!(
        "signing key {} from {source}",
        signing_key.fingerprint()
    ));
    Ok(signing_key)
}

fn run_build(global: &GlobalArgs, args: &BuildArgs, reporter: &Reporter) -> CliResult {
    let options = build_options(global, &args.package);
    let plan = package::plan(&options, reporter)?;
    if args.explain {
        print!("{}", package::explain(&plan));
        return Ok(ExitCode::SUCCESS);
    }
    let config = RepoConfig::resolve(
        &plan.workspace.metadata,
        &plan.workspace.root,
        &plan.workspace.root_manifest,
        &plan.workspace.target_dir,
    )?;
    // A plain build signs with a configured key only; it never creates the development key.
    let signer = if args.package.no_sign || !config.sign_debs {
        None
    } else {
        let key = configured_key(&args.key, &config, reporter)?;
        if key.is_none() {
            reporter.detail("no signing key configured: the .debs are not signed");
        }
        key
    };
    package::build(&plan, &options, signer.as_ref(), reporter)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &PublishReport, reporter: &Reporter) {
    let mut human = String::new();
    let verb = if report.dry_run {
        "would publish"
    } else {
        "published"
    };
    for p in &report.added {
        human.push_str(&format!(
            "{verb} {} {} ({}) to {}\n",
            p.name, p.version, p.architecture, report.suite
        ));
    }
    for p in &report.unchanged {
        human.push_str(&format!(
            "unchanged {} {} ({}) in {}\n",
            p.name, p.version, p.architecture, report.suite
        ));
    }
    for p in &report.retired {
        human.push_str(&format!(
            "retired {} {} ({}) from {}\n",
            p.name, p.version, p.architecture, report.suite
        ));
    }
    if report.dry_run {
        human.push_str("plan (dry run, nothing was changed):\n");
        for step in &report.plan {
            human.push_str(&format!("  {step}\n"));
        }
    }
    for key in &report.deleted {
        human.push_str(&format!(
            "deleted {key} (unreferenced for longer than the grace period)\n"
        ));
    }
    reporter.result(
        "published",
        &human,
        serde_json::to_value(report).unwrap_or_default(),
    );
}

fn publish_with(
    store: &dyn Store,
    config: &RepoConfig,
    key: &SigningKey,
    options: &PublishOptionsArgs,
    debs: &[PathBuf],
    destination_url: &str,
    reporter: &Reporter,
) -> CliResult {
    let incoming = publish::read_debs(debs)?;
    let suite = options
        .suite
        .clone()
        .unwrap_or_else(|| config.default_suite.clone());
    publish_incoming(
        store,
        config,
        key,
        suite,
        &options.control,
        &incoming,
        destination_url,
        reporter,
    )
}

#[allow(clippy::too_many_arguments)]
fn publish_incoming(
    store: &dyn Store,
    config: &RepoConfig,
    key: &SigningKey,
    suite: String,
    control: &PublishControlArgs,
    incoming: &[publish::IncomingDeb],
    destination_url: &str,
    reporter: &Reporter,
) -> CliResult {
    let publish = Publish {
        store,
        key,
        suite,
        settings: config.publish.clone(),
        lock: LockOptions {
            wait: control.wait_for_lock.map(Duration::from_secs),
            break_lock: control.break_lock,
        },
        dry_run: control.dry_run,
        now: &repo_config::now,
    };
    let report = publish.run(incoming, reporter)?;
    print_report(&report, reporter);
    if !report.dry_run {
        reporter.detail(&format!(
            "servers: deb [signed-by=/usr/share/keyrings/speedy-archive-keyring.gpg] {} {} main",
            destination_url, report.suite
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_publish(global: &GlobalArgs, args: &PublishArgs, reporter: &Reporter) -> CliResult {
    let (info, config) = repo_config(global, &args.repo)?;
    let debs = if args.debs.is_empty() {
        publish::debs_in(&info.target_dir.join("speedy").join("debs"))
    } else {
        args.debs.clone()
    };
    let destination = destination(&config, &args.repo)?;
    let key = repo_signing_key(&args.key, &config, &destination, reporter)?;
    let store = open_store(&destination)?;
    publish_with(
        store.as_ref(),
        &config,
        &key,
        &args.options,
        &debs,
        &destination.public_url(),
        reporter,
    )
}

fn run_release(global: &GlobalArgs, args: &ReleaseArgs, reporter: &Reporter) -> CliResult {
    let (_, config) = repo_config(global, &args.repo)?;
    let destination = destination(&config, &args.repo)?;
    let key = repo_signing_key(&args.key, &config, &destination, reporter)?;
    // Reach the store before building: a wrong bucket or missing credentials should
    // not cost a build.
    let store = open_store(&destination)?;
    store.head(cargo_speedy::repo::layout::LOCK_KEY)?;
    let options = build_options(global, &args.package);
    let plan = package::plan(&options, reporter)?;
    let signer = (!args.package.no_sign && config.sign_debs).then_some(&key);
    let built = package::build(&plan, &options, signer, reporter)?;
    let debs: Vec<PathBuf> = built.into_iter().map(|d| d.path).collect();
    publish_with(
        store.as_ref(),
        &config,
        &key,
        &args.options,
        &debs,
        &destination.public_url(),
        reporter,
    )
}

fn run_promote(global: &GlobalArgs, args: &PromoteArgs, reporter: &Reporter) -> CliResult {
    let (_, config) = repo_config(global, &args.repo)?;
    let destination = destination(&config, &args.repo)?;
    let key = existing_key(&args.key, &config, reporter)?;
    let store = open_store(&destination)?;
    let incoming = publish::promotion(
        store.as_ref(),
        &key.public_key(),
        &args.from,
        &args.packages,
    )?;
    publish_incoming(
        store.as_ref(),
        &config,
        &key,
        args.to.clone(),
        &args.control,
        &incoming,
        &destination.public_url(),
        reporter,
    )
}

/// The public key for reading: --keyring, else the signing key's public half.
fn reading_key(args: &RepoReadArgs, config: &RepoConfig) -> Result<PublicKey, Box<dyn Error>> {
    if let Some(path) = &args.keyring {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return Ok(PublicKey::from_bytes(&bytes, &path.display().to_string())?);
    }
    Ok(existing_key(&args.key, config, &SilentListener)?.public_key())
}

fn run_list(global: &GlobalArgs, args: &RepoReadArgs, reporter: &Reporter) -> CliResult {
    let (_, config) = repo_config(global, &args.repo)?;
    let key = reading_key(args, &config)?;
    let destination = destination(&config, &args.repo)?;
    let store = open_store(&destination)?;
    let suites = verify::list(store.as_ref(), &key)?;
    let mut human = String::new();
    let mut json = Vec::new();
    for suite in &suites {
        human.push_str(&format!(
            "{} ({}, {} packages)\n",
            suite.suite,
            suite.release.date,
            suite.packages.len()
        ));
        let mut packages = Vec::new();
        for p in &suite.packages {
            human.push_str(&format!("  {} {} {}\n", p.name, p.version, p.architecture));
            packages.push(serde_json::json!({ "name": p.name, "version": p.version, "architecture": p.architecture, "filename": p.filename, "sha256": p.sha256, "size": p.size }));
        }
        json.push(serde_json::json!({ "suite": suite.suite, "date": suite.release.date, "packages": packages }));
    }
    if suites.is_empty() {
        human.push_str(&format!(
            "{}: no suites published yet\n",
            destination.describe()
        ));
    }
    reporter.result(
        "list",
        &human,
        serde_json::json!({ "repository": destination.describe(), "suites": json }),
    );
    Ok(ExitCode::SUCCESS)
}

fn run_verify(global: &GlobalArgs, args: &RepoReadArgs, reporter: &Reporter) -> CliResult {
    let (_, config) = repo_config(global, &args.repo)?;
    let key = reading_key(args, &config)?;
    let destination = destination(&config, &args.repo)?;
    let store = open_store(&destination)?;
    let report = verify::verify(store.as_ref(), &key)?;
    let mut human = String::new();
    for suite in &report.suites {
        let status = if suite.problems.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        human.push_str(&format!(
            "{}: {status} ({} packages)\n",
            suite.suite, suite.packages
        ));
        for problem in &suite.problems {
            human.push_str(&format!("  problem: {problem}\n"));
        }
        for note in &suite.notes {
            human.push_str(&format!("  note: {note}\n"));
        }
    }
    if report.suites.is_empty() {
        human.push_str(&format!(
            "{}: no suites published yet\n",
            destination.describe()
        ));
    }
    reporter.result(
        "verify",
        &human,
        serde_json::to_value(&report).unwrap_or_default(),
    );
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

fn run_doctor(global: &GlobalArgs, args: &DoctorArgs, reporter: &Reporter) -> CliResult {
    let (_, config) = repo_config(global, &args.repo)?;
    let Destination::Spaces {
        config: s3,
        public_url,
    } = destination(&config, &args.repo)?
    else {
        return Err("doctor checks a Spaces bucket: set `bucket` in [workspace.metadata.speedy.repo.spaces] or pass --bucket".into());
    };
    let store = S3Store::new(s3, Credentials::from_env()?)?;
    let checks = store.doctor(&public_url);
    let mut human = format!("{:<24} {:<6} detail\n", "check", "result");
    for check in &checks {
        let status = match check.status {
            CheckStatus::Pass => "ok",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "FAIL",
            CheckStatus::Skip => "skip",
        };
        human.push_str(&format!(
            "{:<24} {:<6} {}\n",
            check.check, status, check.detail
        ));
    }
    reporter.result("doctor", &human, serde_json::json!({ "store": store.describe(), "public_url": public_url, "checks": checks }));
    let failed = checks.iter().any(|c| c.status == CheckStatus::Fail);
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn run_key(global: &GlobalArgs, command: &KeyCommand, reporter: &Reporter) -> CliResult {
    match command {
        KeyCommand::Generate {
            output,
            algorithm,
            user_id,
        } => {
            let passphrase = std::env::var(repo_config::PASSPHRASE_ENV)
                .ok()
                .filter(|p| !p.is_empty());
            let encrypted = passphrase.is_some();
            let key = SigningKey::generate(&KeyParams {
                algorithm: match algorithm {
                    AlgorithmArg::Ed25519 => KeyAlgorithm::Ed25519,
                    AlgorithmArg::Rsa3072 => KeyAlgorithm::Rsa3072,
                    AlgorithmArg::Rsa4096 => KeyAlgorithm::Rsa4096,
                },
                user_id: user_id.clone(),
                passphrase,
                created: repo_config::now(),
            })?;
            repo_config::write_secret_file(output, key.to_armored()?.as_bytes())?;
            let human = format!(
                "created {} ({}) with fingerprint {}\n  keep it secret; configure it with `key-file` in [workspace.metadata.speedy.signing] or ${} in CI\n  export the public key: cargo speedy key export --key-file {} --output archive-keyring.gpg\n",
                output.display(),
                if encrypted { "passphrase-protected" } else { "no passphrase" },
                key.fingerprint(),
                repo_config::KEY_ENV,
                output.display()
            );
            reporter.result("key-generated", &human, serde_json::json!({ "path": output, "fingerprint": key.fingerprint(), "encrypted": encrypted }));
        }
        KeyCommand::Export {
            key,
            repo,
            output,
            armor,
        } => {
            let config = key_command_config(global, key, repo)?;
            let signing_key = existing_key(key, &config, reporter)?;
            let public_key = signing_key.public_key();
            let armored = *armor || output.extension().is_some_and(|e| e == "asc");
            let bytes = if armored {
                public_key.to_armored()?.into_bytes()
            } else {
                public_key.to_binary()?
            };
            write_public_file(output, &bytes)?;
            let human = format!(
                "wrote the public key {} to {}\n",
                public_key.fingerprint(),
                output.display()
            );
            reporter.result("key-exported", &human, serde_json::json!({ "path": output, "fingerprint": public_key.fingerprint(), "armored": armored }));
        }
        KeyCommand::DebsigPolicy { key, repo } => {
            let config = key_command_config(global, key, repo)?;
            let signing_key = existing_key(key, &config, reporter)?;
            let fingerprint = signing_key.fingerprint();
            let policy =
                cargo_speedy::debfile::debsig_policy(&fingerprint, &config.publish.repo.origin);
            let (policy_path, keyring_path) = cargo_speedy::debfile::debsig_paths(&fingerprint);
            let human = format!(
                "{policy}\n<!-- install as /etc/debsig/policies/{policy_path}, with the binary public keyring as /usr/share/debsig/keyrings/{keyring_path} -->\n"
            );
            reporter.result("debsig-policy", &human, serde_json::json!({ "policy": policy, "policy_path": format!("/etc/debsig/policies/{policy_path}"), "keyring_path": format!("/usr/share/debsig/keyrings/{keyring_path}") }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The settings for `key export` and `key debsig-policy`: the workspace's, or with
/// `--key-file` outside a workspace, the defaults (a key file needs no Cargo.toml).
fn key_command_config(
    global: &GlobalArgs,
    key: &KeyArgs,
    repo: &RepoArgs,
) -> Result<RepoConfig, Box<dyn Error>> {
    match repo_config(global, repo) {
        Ok((_, config)) => Ok(config),
        Err(_) if key.key_file.is_some() && global.manifest_path.is_none() => {
            let here = std::env::current_dir()?;
            let defaults = cargo_speedy::config::WorkspaceMetadata::default();
            Ok(RepoConfig::resolve(
                &defaults,
                &here,
                &here.join("Cargo.toml"),
                &here.join("target"),
            )?)
        }
        Err(error) => Err(error),
    }
}

/// A configured key or an existing development key; never generates one.
fn configured_key(
    key: &KeyArgs,
    config: &RepoConfig,
    listener: &dyn Listener,
) -> Result<Option<SigningKey>, Box<dyn Error>> {
    let existing_dev_key = Some(config.dev_key_path()).filter(|p| p.exists());
    let found = repo_config::find_signing_key(
        key.key_file.as_deref(),
        config.key_file.as_deref(),
        existing_dev_key.as_deref(),
    )?;
    Ok(found.map(|(signing_key, source)| {
        repo_config::warn_about_dev_key(&source, listener);
        signing_key
    }))
}

/// Like [`configured_key`], but a key is required.
fn existing_key(
    key: &KeyArgs,
    config: &RepoConfig,
    listener: &dyn Listener,
) -> Result<SigningKey, Box<dyn Error>> {
    configured_key(key, config, listener)?.ok_or_else(|| {
        repo_config::KeyError::NotConfigured {
            destination: config.dir.display().to_string(),
        }
        .into()
    })
}

/// apt reads keyrings as the `_apt` user: public key files must be world-readable.
fn write_public_file(path: &Path, bytes: &[u8]) -> Result<(), Box<dyn Error>> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| format!("cannot make {} world-readable: {e}", path.display()))?;
    Ok(())
}

fn main() -> ExitCode {
    let CargoCli::Speedy(cli) = CargoCli::parse();
    let reporter = Reporter::new(&cli.global);
    let global = &cli.global;
    let result = match &cli.command {
        Command::Build(args) => run_build(global, args, &reporter),
        Command::Publish(args) => run_publish(global, args, &reporter),
        Command::Release(args) => run_release(global, args, &reporter),
        Command::Promote(args) => run_promote(global, args, &reporter),
        Command::List(args) => run_list(global, args, &reporter),
        Command::Verify(args) => run_verify(global, args, &reporter),
        Command::Key(command) => run_key(global, command, &reporter),
        Command::Doctor(args) => run_doctor(global, args, &reporter),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            reporter.error(error.as_ref());
            ExitCode::FAILURE
        }
    }
}
