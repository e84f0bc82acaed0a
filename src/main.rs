//! `cargo speedy`: clap definitions and output. The work happens in the library.

use cargo_speedy::listener::{BuiltDeb, Listener};
use cargo_speedy::package::{self, BuildOptions, Compression};
use cargo_speedy::workspace::LockingFlags;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// Cargo runs `cargo-speedy speedy <args>`; the first argument is the subcommand name.
#[derive(Parser)]
#[command(name = "cargo", bin_name = "cargo")]
enum CargoCli {
    Speedy(SpeedyCli),
}

#[derive(Args)]
#[command(
    version,
    about = "Build the services of a workspace into Debian packages with systemd units",
    long_about = None
)]
struct SpeedyCli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a .deb per service into target/speedy/debs/
    Build(BuildArgs),
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

#[derive(Args)]
struct CommonArgs {
    /// Path to Cargo.toml
    #[arg(long, value_name = "PATH", global = true)]
    manifest_path: Option<PathBuf>,
    /// Package(s) to build (default: every package with [package.metadata.speedy])
    #[arg(short = 'p', long = "package", value_name = "SPEC")]
    packages: Vec<String>,
    /// Build for the target triple
    #[arg(long, value_name = "TRIPLE")]
    target: Option<String>,
    /// Build with the given profile
    #[arg(long, value_name = "PROFILE-NAME", default_value = "release")]
    profile: String,
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
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto", global = true)]
    color: ColorChoice,
    /// Output format for messages
    #[arg(long, value_enum, value_name = "FMT", default_value = "human", global = true)]
    message_format: MessageFormat,
}

#[derive(Args)]
struct BuildArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Print the rendered units, timers, sysusers entries and maintainer scripts
    /// without building anything
    #[arg(long)]
    explain: bool,
    /// Package the binaries already built instead of running `cargo build`
    #[arg(long)]
    no_build: bool,
    /// Compression of the archive members
    #[arg(long, value_enum, default_value = "xz")]
    compression: CompressionArg,
}

/// Human lines on stderr (results on stdout), or one JSON object per line on stdout.
struct Reporter {
    format: MessageFormat,
    verbose: bool,
    quiet: bool,
    color: bool,
}

impl Reporter {
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

    fn error(&self, error: &dyn std::error::Error) {
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
            MessageFormat::Json => self.json(serde_json::json!({ "reason": "error", "message": message })),
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
            MessageFormat::Json => self.json(serde_json::json!({ "reason": "warning", "message": message })),
            MessageFormat::Human => self.human("warning", "1;33", message),
        }
    }

    fn info(&self, message: &str) {
        if self.quiet {
            return;
        }
        match self.format {
            MessageFormat::Json => self.json(serde_json::json!({ "reason": "info", "message": message })),
            MessageFormat::Human => {
                let (label, rest) = message.split_once(' ').unwrap_or((message, ""));
                self.human(label, "1;32", rest);
            }
        }
    }

    fn detail(&self, message: &str) {
        if self.verbose {
            match self.format {
                MessageFormat::Json => self.json(serde_json::json!({ "reason": "detail", "message": message })),
                MessageFormat::Human => self.human("", "2", message),
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
                    self.human("Finished", "1;32", &format!("{} ({} bytes)", deb.path.display(), deb.size));
                }
                println!("{}", deb.path.display());
            }
        }
    }
}

fn reporter(common: &CommonArgs) -> Reporter {
    let color = match common.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    Reporter { format: common.message_format, verbose: common.verbose, quiet: common.quiet, color }
}

fn build_options(args: &BuildArgs) -> BuildOptions {
    let common = &args.common;
    let mut cargo_args = Vec::new();
    if common.quiet || common.message_format == MessageFormat::Json {
        cargo_args.push("--quiet".to_owned());
    }
    if common.verbose {
        cargo_args.push("--verbose".to_owned());
    }
    cargo_args.push(format!(
        "--color={}",
        match common.color {
            ColorChoice::Auto => "auto",
            ColorChoice::Always => "always",
            ColorChoice::Never => "never",
        }
    ));
    BuildOptions {
        manifest_path: common.manifest_path.clone(),
        packages: common.packages.clone(),
        target: common.target.clone(),
        profile: common.profile.clone(),
        locking: LockingFlags { locked: common.locked, offline: common.offline, frozen: common.frozen },
        no_build: args.no_build,
        compression: match args.compression {
            CompressionArg::Xz => Compression::Xz,
            CompressionArg::Gzip => Compression::Gzip,
            CompressionArg::XzFast => Compression::XzFast,
        },
        cargo_args,
    }
}

fn run_build(args: &BuildArgs, reporter: &Reporter) -> Result<(), package::BuildError> {
    let options = build_options(args);
    let plan = package::plan(&options, reporter)?;
    if args.explain {
        print!("{}", package::explain(&plan));
        return Ok(());
    }
    package::build(&plan, &options, reporter)?;
    Ok(())
}

fn main() -> ExitCode {
    let CargoCli::Speedy(cli) = CargoCli::parse();
    match cli.command {
        Command::Build(args) => {
            let reporter = reporter(&args.common);
            match run_build(&args, &reporter) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    reporter.error(&error);
                    ExitCode::FAILURE
                }
            }
        }
    }
}
