//! The command line for engineers at a terminal, in the server's binary: `legato trace`,
//! `search`, `tags`, `values` and `metrics` query any Tempo-compatible endpoint; `legato
//! blocks` reads a bucket directly. It runs only when the first argument is one of
//! [`SUBCOMMANDS`]; everything else is the server's Tempo-style flags, untouched.
//!
//! Rendering is pure (data in, `String` out, at a given width, colour or not) so snapshot
//! tests cover it; fetching and printing stay in `query.rs` and `blocks.rs`.

mod blocks;
mod client;
mod json;
mod query;
mod range;
mod sparkline;
mod table;
mod text;
mod waterfall;

use std::ffi::{OsStr, OsString};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use text::Style;

/// First arguments that select the CLI instead of the server.
pub const SUBCOMMANDS: [&str; 7] = ["trace", "search", "tags", "values", "metrics", "blocks", "help"];

/// Whether `first` (the first argument after the program name) names a subcommand.
pub fn is_subcommand(first: Option<&OsStr>) -> bool {
    first
        .and_then(OsStr::to_str)
        .is_some_and(|word| SUBCOMMANDS.contains(&word))
}

const SERVER_HELP: &str = "Without a subcommand legato runs the server: \
legato [-config.file=PATH] [-target=all|...] [-config.expand-env] [-config.verify]";

#[derive(Debug, Parser)]
#[command(
    name = "legato",
    version,
    about = "Query a Tempo-compatible endpoint and inspect block storage from a terminal.",
    after_help = SERVER_HELP,
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Output width in columns (default: the terminal's, else 100).
    #[arg(long, global = true, env = "LEGATO_WIDTH")]
    width: Option<usize>,
    /// No ANSI colour (also off when stdout is not a terminal, or NO_COLOR is set).
    #[arg(long, global = true)]
    no_color: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Draw a trace as a waterfall: spans in tree order with bars on a shared time axis.
    Trace(query::TraceArgs),
    /// Search traces with TraceQL: a table of trace id, root service and name, start,
    /// duration and matched spans.
    Search(query::SearchArgs),
    /// Tag names, grouped by scope.
    Tags(query::TagsArgs),
    /// Values of one tag.
    Values(query::ValuesArgs),
    /// Run a TraceQL metrics query: a sparkline per series with min, max and last.
    Metrics(query::MetricsArgs),
    /// Read a bucket's blocks directly: list, inspect, verify.
    #[command(subcommand)]
    Blocks(blocks::BlocksCommand),
}

impl Cli {
    fn style(&self) -> Style {
        let terminal = console::Term::stdout()
            .size_checked()
            .map(|(_, cols)| usize::from(cols));
        let columns = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok());
        let color = !self.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal();
        Style {
            width: self.width.or(terminal).or(columns).unwrap_or(100).max(20),
            color,
        }
    }
}

/// Runs the CLI on the full argument list (program name first) and returns the exit code:
/// 0 on success, 1 when the command failed, 2 for a usage error.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args.into_iter().map(tempo_style_flag)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let style = cli.style();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("legato: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match cli.command {
            Command::Trace(args) => query::trace(args, style).await,
            Command::Search(args) => query::search(args, style).await,
            Command::Tags(args) => query::tags(args, style).await,
            Command::Values(args) => query::values(args, style).await,
            Command::Metrics(args) => query::metrics(args, style).await,
            Command::Blocks(command) => blocks::run(command, style).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("legato: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `-config.file=x` and `-config.expand-env` as the server spells them, for `blocks`: clap
/// wants two dashes for long flags.
fn tempo_style_flag(arg: OsString) -> OsString {
    match arg.to_str() {
        Some(text) if text.starts_with("-config.") => OsString::from(format!("-{text}")),
        _ => arg,
    }
}

/// Writes to stdout; a closed pipe (`legato search | head`) ends output quietly.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(args.iter().map(|a| tempo_style_flag(OsString::from(a))))
    }

    #[test]
    fn only_subcommand_words_select_the_cli() {
        for word in SUBCOMMANDS {
            assert!(is_subcommand(Some(OsStr::new(word))));
        }
        for server in [
            "-config.file=x.yaml",
            "-target=all",
            "-config.verify",
            "--help",
            "-version",
        ] {
            assert!(!is_subcommand(Some(OsStr::new(server))), "{server}");
        }
        assert!(!is_subcommand(None));
    }

    #[test]
    fn arguments_parse() {
        let cli = parse(&[
            "legato",
            "trace",
            "abc",
            "--url",
            "http://t:3200",
            "--width",
            "80",
            "--no-color",
        ])
        .unwrap();
        assert_eq!(
            cli.style(),
            Style {
                width: 80,
                color: false
            }
        );
        let Command::Trace(args) = cli.command else {
            panic!("trace")
        };
        assert_eq!((args.id.as_str(), args.endpoint.url.as_str()), ("abc", "http://t:3200"));

        let cli = parse(&[
            "legato",
            "blocks",
            "list",
            "-config.file=/etc/legato.yaml",
            "-config.expand-env",
        ])
        .unwrap();
        let Command::Blocks(blocks::BlocksCommand::List { bucket, .. }) = cli.command else {
            panic!("list")
        };
        assert_eq!(bucket.config_file.unwrap().to_str(), Some("/etc/legato.yaml"));
        assert!(bucket.expand_env);

        assert!(parse(&["legato", "blocks", "list"]).is_err(), "a bucket is required");
        assert!(parse(&["legato", "blocks", "list", "--path", "a", "-config.file", "b"]).is_err());
        assert!(parse(&["legato", "trace", "a", "--bearer-token", "t", "--basic-auth", "u:p"]).is_err());
        assert!(parse(&["legato", "search", "--since", "1h", "--start", "2h"]).is_err());
        let cli = parse(&["legato", "metrics", "{} | rate()", "--instant", "--step", "1m"]).unwrap();
        assert!(matches!(cli.command, Command::Metrics(ref m) if m.instant));
    }
}
