//! `cargo speedy`: the flags, a call into the library (`cargo_speedy::ops`, one
//! operation per command) and the printing of its report (`cargo_speedy::output`).
//! Nothing else belongs here.

use cargo_speedy::config::{RepoOverrides, SpacesMetadata};
use cargo_speedy::ops::{self, CommandError, PublishControl, RepoTarget};
use cargo_speedy::output::{ColorChoice, Format, Message, Reporter};
use cargo_speedy::package::{BuildOptions, Compression};
use cargo_speedy::sign::KeyAlgorithm;
use cargo_speedy::workspace::LockingFlags;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
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
    /// Check the signing keys against what apt accepts, and probe the configured Spaces
    /// bucket: credentials, conditional writes, checksum headers, anonymous public reads
    Doctor(DoctorArgs),
    /// List the recorded changes of the suites, newest first
    History(HistoryArgs),
    /// Make an earlier state of a suite current again (default: the one before the last change)
    Rollback(RollbackArgs),
    /// Remove one version of a package from a suite
    Withdraw(WithdrawArgs),
    /// Set the share of servers that take the newest version of a package (100: all)
    Phase(PhaseArgs),
    /// Print what a new Debian server of a role runs to join: a script, or cloud-init user data
    ServerSetup(ServerSetupArgs),
    /// Switch every server of a suite at once through the signed repository: where `db`
    /// points, the maintenance page
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// The database backups of [workspace.metadata.speedy.backup]: list, restore, prune
    #[command(subcommand)]
    Backup(BackupCommand),
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Point the host name `db` at ADDRESS on every server of the suite
    Db {
        /// The IP address `db` resolves to
        #[arg(value_name = "ADDRESS")]
        address: std::net::IpAddr,
        #[command(flatten)]
        edit: SuiteEditArgs,
    },
    /// Turn the maintenance page on or off on the servers of the suite
    Maintenance {
        #[arg(value_enum)]
        state: MaintenanceState,
        /// Only the servers of this role, from [workspace.metadata.speedy.roles]
        #[arg(long)]
        role: Option<String>,
        /// The message the page shows (one line, at most 200 characters)
        #[arg(long)]
        message: Option<String>,
        #[command(flatten)]
        edit: SuiteEditArgs,
    },
    /// Show the settings the servers of the suite follow, and since when
    Status {
        /// The suite
        #[arg(long)]
        suite: String,
        #[command(flatten)]
        read: RepoReadArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MaintenanceState {
    On,
    Off,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Turn the backup bucket's versioning on and set its lifecycle rule (expire after
    /// `retention-days`), with the operator's credential
    Setup,
    /// List the backups in the bucket: time, database, host, size, whether the checksum is there
    List,
    /// Fetch a backup, verify its checksum and decrypt it with the age key file named by
    /// $SPEEDY_BACKUP_IDENTITY_FILE, into a file or a database
    Restore {
        /// The newest complete backup (of --database)
        #[arg(long, conflicts_with = "name")]
        latest: bool,
        /// A backup's key, as `backup list` shows it
        #[arg(required_unless_present = "latest")]
        name: Option<String>,
        /// With --latest: whose newest backup (default: the first configured database)
        #[arg(long)]
        database: Option<String>,
        /// Write the decrypted custom-format dump here (0600), for pg_restore
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "into",
            conflicts_with = "into"
        )]
        to: Option<PathBuf>,
        /// Restore into this database with pg_restore (a password belongs in $PGPASSWORD or ~/.pgpass)
        #[arg(long, value_name = "postgres://...")]
        into: Option<String>,
    },
    /// Delete the backups older than `retention-days` (never a database's newest complete one),
    /// with the operator's credential: servers cannot delete
    Prune {
        /// Say what would go, delete nothing
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
struct ServerSetupArgs {
    /// The role, from [workspace.metadata.speedy.roles]
    #[arg(long)]
    role: String,
    /// The suite the server follows (default: `default-suite`)
    #[arg(long)]
    suite: Option<String>,
    /// The IP address the host name `db` resolves to (default 127.0.0.1 for a role that installs postgresql)
    #[arg(long, value_name = "ADDRESS")]
    db_host: Option<std::net::IpAddr>,
    /// The repository URL the server uses (default: the configured one: `file:` for a local
    /// directory, the public or CDN URL for Spaces)
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// script: a shell script to run as root; cloud-init: #cloud-config user data for a new droplet
    #[arg(long, value_enum, default_value_t)]
    format: ops::SetupFormat,
    /// For a private repository (acl = "private"): a file of SPEEDY_READ_ACCESS_KEY_ID=… and
    /// SPEEDY_READ_SECRET_ACCESS_KEY=… lines, the bucket's read-only key (default: those variables)
    #[arg(long, value_name = "FILE")]
    read_credential_file: Option<PathBuf>,
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
}

/// A change of one suite that adds no packages.
#[derive(Args)]
struct SuiteEditArgs {
    /// The suite to change
    #[arg(long)]
    suite: String,
    #[command(flatten)]
    control: PublishControlArgs,
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct HistoryArgs {
    /// Only this suite (default: every configured suite)
    #[arg(long)]
    suite: Option<String>,
    #[command(flatten)]
    read: RepoReadArgs,
}

#[derive(Args)]
struct RollbackArgs {
    /// Bring back the suite as it was right after change N of `cargo speedy history`
    /// (default: as it was before the newest change)
    #[arg(long, value_name = "N")]
    to: Option<u64>,
    /// Allow a rollback that leaves the suite without any of the workspace's services
    #[arg(long)]
    allow_empty: bool,
    #[command(flatten)]
    edit: SuiteEditArgs,
}

#[derive(Args)]
struct WithdrawArgs {
    /// The package
    #[arg(short = 'p', long = "package", value_name = "NAME")]
    package: String,
    /// Its version to remove, e.g. 1.4.1-1
    #[arg(long)]
    version: String,
    /// Allow a withdraw that leaves the suite without any of the workspace's services
    #[arg(long)]
    allow_empty: bool,
    #[command(flatten)]
    edit: SuiteEditArgs,
}

#[derive(Args)]
struct PhaseArgs {
    /// A package whose newest version to phase (repeatable; default: every package the
    /// suite's last change added or re-phased)
    #[arg(short = 'p', long = "package", value_name = "NAME")]
    packages: Vec<String>,
    /// The percentage of servers that take it (0-100). apt lets a server in when its
    /// draw (0-100) is at or below it, so P lets about (P+1) in 101 through and 0
    /// still about 1 in 101: to hold a version back from every server, `withdraw` it
    #[arg(value_parser = clap::value_parser!(u8).range(0..=100))]
    percent: u8,
    #[command(flatten)]
    edit: SuiteEditArgs,
}

#[derive(Args)]
struct DoctorArgs {
    /// For a private repository (acl = "private"): the servers' read-only key to check, a file of
    /// SPEEDY_READ_ACCESS_KEY_ID=… and SPEEDY_READ_SECRET_ACCESS_KEY=… lines (default: those variables)
    #[arg(long, value_name = "FILE")]
    read_credential_file: Option<PathBuf>,
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
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
    message_format: Format,
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
    compression: Compression,
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
    fn overrides(&self) -> RepoOverrides {
        RepoOverrides {
            dir: self.repo_dir.clone(),
            spaces: self.spaces(),
        }
    }

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
            retry_deadline: None,
            attempt_timeout: None,
            cdn_endpoint_id: None,
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
    /// Publish the new versions to this percentage of servers only (apt's phased updates)
    /// (apt lets about PERCENT+1 servers in 101 through: 0 still lets about 1 in 101 in;
    /// `withdraw` holds a version back from all)
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    phased: Option<u8>,
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
    /// Publish with the configured origin even though the suite has another (then run
    /// server-setup again on every server: servers follow a repository by its origin)
    #[arg(long)]
    change_origin: bool,
}

/// The flags of a command that writes a suite it names with --suite.
#[derive(Args)]
struct WriteArgs {
    #[command(flatten)]
    options: PublishOptionsArgs,
    #[command(flatten)]
    repo: RepoArgs,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Args)]
struct PublishArgs {
    /// The .debs to publish (default: every .deb in target/speedy/debs)
    debs: Vec<PathBuf>,
    #[command(flatten)]
    write: WriteArgs,
}

#[derive(Args)]
struct ReleaseArgs {
    #[command(flatten)]
    package: PackageArgs,
    #[command(flatten)]
    write: WriteArgs,
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
    /// Promote them to this percentage of servers only (apt's phased updates)
    /// (apt lets about PERCENT+1 servers in 101 through: 0 still lets about 1 in 101 in;
    /// `withdraw` holds a version back from all)
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=100))]
    phased: Option<u8>,
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

/// The one repository flag a key command uses: the development key lives beside a
/// local-directory repository.
#[derive(Args, Clone)]
struct KeyRepoArgs {
    /// The local-directory repository whose development key to use (default: `dir`
    /// in [workspace.metadata.speedy.repo], else target/speedy/repo)
    #[arg(long, value_name = "DIR")]
    repo_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a signing key (OpenPGP v4); the passphrase, if any, comes from $SPEEDY_SIGNING_PASSPHRASE
    Generate {
        /// Where to write the armored secret key (created 0600, never overwritten)
        #[arg(long, value_name = "PATH")]
        output: PathBuf,
        #[arg(long, value_enum, default_value = "ed25519")]
        algorithm: KeyAlgorithm,
        /// The key's user id (default: "<Origin> apt repository", with the workspace's
        /// maintainer address when it names one)
        #[arg(long)]
        user_id: Option<String>,
    },
    /// Export the public key: a binary keyring for /usr/share/keyrings, or armored (.asc)
    Export {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        repo: KeyRepoArgs,
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
        repo: KeyRepoArgs,
    },
}

impl GlobalArgs {
    fn reporter(&self) -> Reporter {
        Reporter::new(
            self.message_format,
            self.verbose,
            self.quiet,
            self.color.enabled(),
        )
    }

    fn locking(&self) -> LockingFlags {
        LockingFlags {
            locked: self.locked,
            offline: self.offline,
            frozen: self.frozen,
        }
    }

    fn target(&self, overrides: RepoOverrides, key: &KeyArgs) -> RepoTarget {
        RepoTarget {
            manifest_path: self.manifest_path.clone(),
            locking: self.locking(),
            overrides,
            key_file: key.key_file.clone(),
        }
    }

    fn write(
        &self,
        repo: &RepoArgs,
        key: &KeyArgs,
        suite: &Option<String>,
        control: &PublishControlArgs,
        phased: Option<u8>,
    ) -> ops::WriteOptions {
        ops::WriteOptions {
            repo: self.target(repo.overrides(), key),
            suite: suite.clone(),
            phased,
            control: PublishControl {
                dry_run: control.dry_run,
                wait_for_lock: control.wait_for_lock.map(Duration::from_secs),
                break_lock: control.break_lock,
                change_origin: control.change_origin,
            },
        }
    }

    fn build_options(&self, args: &PackageArgs) -> BuildOptions {
        let mut cargo_args = vec![self.color.cargo_flag().to_owned()];
        if self.quiet || self.message_format == Format::Json {
            cargo_args.push("--quiet".to_owned());
        }
        if self.verbose {
            cargo_args.push("--verbose".to_owned());
        }
        BuildOptions {
            manifest_path: self.manifest_path.clone(),
            packages: args.packages.clone(),
            target: args.target.clone(),
            profile: args.profile.clone(),
            locking: self.locking(),
            no_build: args.no_build,
            compression: args.compression,
            cargo_args,
        }
    }
}

impl KeyRepoArgs {
    fn overrides(&self) -> RepoOverrides {
        RepoOverrides {
            dir: self.repo_dir.clone(),
            ..RepoOverrides::default()
        }
    }
}

/// Runs one command; its result is printed, an error is returned.
fn run(global: &GlobalArgs, command: &Command, out: &Reporter) -> Result<ExitCode, CommandError> {
    let published = |summary: ops::PublishSummary| {
        out.result(&Message::Published(&summary));
        out.next_steps(&summary);
        ExitCode::SUCCESS
    };
    let exit = |ok: bool| ExitCode::from(if ok { 0 } else { 2 });
    Ok(match command {
        Command::Build(args) => {
            let options = ops::BuildCommandOptions {
                build: global.build_options(&args.package),
                key_file: args.key.key_file.clone(),
                no_sign: args.package.no_sign,
                explain: args.explain,
            };
            if let ops::BuildOutcome::Explained(text) = ops::build(&options, out)? {
                out.result(&Message::Explain { text: &text });
            }
            ExitCode::SUCCESS
        }
        Command::Publish(args) => published(ops::publish(
            &ops::PublishOptions {
                write: args.write.options(global),
                debs: args.debs.clone(),
            },
            out,
        )?),
        Command::Release(args) => published(ops::release(
            &ops::ReleaseOptions {
                write: args.write.options(global),
                build: global.build_options(&args.package),
                no_sign: args.package.no_sign,
            },
            out,
        )?),
        Command::Promote(args) => published(ops::promote(
            &ops::PromoteOptions {
                write: global.write(
                    &args.repo,
                    &args.key,
                    &Some(args.to.clone()),
                    &args.control,
                    args.phased,
                ),
                from: args.from.clone(),
                packages: args.packages.clone(),
            },
            out,
        )?),
        Command::List(args) => {
            let report = ops::list(&args.options(global), out)?;
            out.result(&Message::List(&report));
            ExitCode::SUCCESS
        }
        Command::Verify(args) => {
            let outcome = ops::verify(&args.options(global), out)?;
            out.result(&Message::Verify(&outcome));
            exit(outcome.ok())
        }
        Command::Doctor(args) => {
            let target = global.target(args.repo.overrides(), &args.key);
            let report = ops::doctor(&target, args.read_credential_file.as_deref(), out)?;
            out.result(&Message::Doctor(&report));
            exit(report.ok())
        }
        Command::ServerSetup(args) => {
            let options = ops::ServerSetupOptions {
                repo: global.target(args.repo.overrides(), &args.key),
                role: args.role.clone(),
                suite: args.suite.clone(),
                db_host: args.db_host,
                url: args.url.clone(),
                format: args.format,
                read_credential_file: args.read_credential_file.clone(),
            };
            out.result(&Message::ServerSetup(&ops::server_setup(&options, out)?));
            ExitCode::SUCCESS
        }
        Command::History(args) => {
            let options = ops::HistoryOptions {
                read: args.read.options(global),
                suite: args.suite.clone(),
            };
            out.result(&Message::History(&ops::history(&options, out)?));
            ExitCode::SUCCESS
        }
        Command::Rollback(args) => published(ops::rollback(
            &ops::RollbackOptions {
                write: args.edit.options(global),
                to: args.to,
                allow_empty: args.allow_empty,
            },
            out,
        )?),
        Command::Withdraw(args) => published(ops::withdraw(
            &ops::WithdrawOptions {
                write: args.edit.options(global),
                package: args.package.clone(),
                version: args.version.clone(),
                allow_empty: args.allow_empty,
            },
            out,
        )?),
        Command::Phase(args) => published(ops::phase(
            &ops::PhaseOptions {
                write: args.edit.options(global),
                packages: args.packages.clone(),
                percent: args.percent,
            },
            out,
        )?),
        Command::Fleet(FleetCommand::Status { suite, read }) => {
            let options = ops::FleetStatusOptions {
                read: read.options(global),
                suite: suite.clone(),
            };
            out.result(&Message::FleetStatus(&ops::fleet_status(&options, out)?));
            ExitCode::SUCCESS
        }
        Command::Fleet(FleetCommand::Db { address, edit }) => {
            fleet_switch(global, edit, ops::FleetChange::Db(*address), out)?
        }
        Command::Fleet(FleetCommand::Maintenance {
            state,
            role,
            message,
            edit,
        }) => fleet_switch(
            global,
            edit,
            ops::FleetChange::Maintenance {
                on: matches!(state, MaintenanceState::On),
                role: role.clone(),
                message: message.clone(),
            },
            out,
        )?,
        Command::Backup(command) => {
            let target = global.target(RepoOverrides::default(), &KeyArgs { key_file: None });
            match command {
                BackupCommand::Setup => {
                    out.result(&Message::BackupSetup(&ops::backup_setup(&target, out)?));
                }
                BackupCommand::List => {
                    out.result(&Message::BackupList(&ops::backup_list(&target, out)?));
                }
                BackupCommand::Restore {
                    latest: _,
                    name,
                    database,
                    to,
                    into,
                } => {
                    let destination = match (to, into) {
                        (Some(path), _) => ops::RestoreDestination::File(path.clone()),
                        (None, Some(url)) => ops::RestoreDestination::Database(url.clone()),
                        (None, None) => unreachable!("clap requires --to or --into"),
                    };
                    let options = ops::RestoreOptions {
                        target,
                        name: name.clone(),
                        database: database.clone(),
                        destination,
                    };
                    out.result(&Message::Restored(&ops::backup_restore(&options, out)?));
                }
                BackupCommand::Prune { dry_run } => {
                    out.result(&Message::Pruned(&ops::backup_prune(
                        &target,
                        cargo_speedy::clock::now(),
                        *dry_run,
                        out,
                    )?));
                }
            }
            ExitCode::SUCCESS
        }
        Command::Key(KeyCommand::Generate {
            output,
            algorithm,
            user_id,
        }) => {
            let options = ops::KeyGenerateOptions {
                output: output.clone(),
                algorithm: *algorithm,
                user_id: user_id.clone(),
            };
            out.result(&Message::KeyGenerated(&ops::key_generate(&options, out)?));
            ExitCode::SUCCESS
        }
        Command::Key(KeyCommand::Export {
            key,
            repo,
            output,
            armor,
        }) => {
            let options = ops::KeyExportOptions {
                repo: global.target(repo.overrides(), key),
                output: output.clone(),
                armor: *armor,
            };
            out.result(&Message::KeyExported(&ops::key_export(&options, out)?));
            ExitCode::SUCCESS
        }
        Command::Key(KeyCommand::DebsigPolicy { key, repo }) => {
            let target = global.target(repo.overrides(), key);
            out.result(&Message::DebsigPolicy(&ops::debsig_policy(&target, out)?));
            ExitCode::SUCCESS
        }
    })
}

/// `fleet db` and `fleet maintenance`: one switch, published.
fn fleet_switch(
    global: &GlobalArgs,
    edit: &SuiteEditArgs,
    change: ops::FleetChange,
    out: &Reporter,
) -> Result<ExitCode, CommandError> {
    let options = ops::FleetOptions {
        write: edit.options(global),
        change,
    };
    out.result(&Message::Fleet(&ops::fleet(&options, out)?));
    Ok(ExitCode::SUCCESS)
}

impl WriteArgs {
    fn options(&self, global: &GlobalArgs) -> ops::WriteOptions {
        let options = &self.options;
        global.write(
            &self.repo,
            &self.key,
            &options.suite,
            &options.control,
            options.phased,
        )
    }
}

impl SuiteEditArgs {
    fn options(&self, global: &GlobalArgs) -> ops::WriteOptions {
        let suite = Some(self.suite.clone());
        global.write(&self.repo, &self.key, &suite, &self.control, None)
    }
}

impl RepoReadArgs {
    fn options(&self, global: &GlobalArgs) -> ops::ReadOptions {
        ops::ReadOptions {
            repo: global.target(self.repo.overrides(), &self.key),
            keyring: self.keyring.clone(),
        }
    }
}

fn main() -> ExitCode {
    let CargoCli::Speedy(cli) = CargoCli::parse();
    let reporter = cli.global.reporter();
    match run(&cli.global, &cli.command, &reporter) {
        Ok(code) => code,
        Err(error) => {
            reporter.error(&error);
            ExitCode::FAILURE
        }
    }
}
