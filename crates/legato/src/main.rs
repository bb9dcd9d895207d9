//! `legato`: the single binary. Flags follow Tempo: `-config.file=PATH`, `-target=all`,
//! `-config.expand-env`. With no config file it runs single-binary on `./data`. A first
//! argument naming a CLI subcommand (`legato trace ID`, `legato blocks list`...) runs the
//! command line instead (see `cli`).

mod app;
mod cli;
mod cluster;
mod config;
mod tls;

use std::path::PathBuf;

use anyhow::bail;

/// mimalloc: faster than the system allocator for the many small allocations of OTLP decoding,
/// and returns memory to the OS more readily under concurrent load.
#[cfg(not(feature = "system-alloc"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Flags {
    config_file: Option<PathBuf>,
    target: Option<String>,
    expand_env: bool,
    /// Validate the configuration, print the outcome and exit.
    verify: bool,
}

const USAGE: &str = "usage: legato [-config.file=PATH] [-target=all|distributor|ingester|querier|query-frontend|compactor] [-config.expand-env] [-config.verify]
       legato trace|search|tags|values|metrics|blocks ... (command line; legato help)";

fn parse_flags() -> anyhow::Result<Option<Flags>> {
    let mut flags = Flags {
        config_file: None,
        target: None,
        expand_env: false,
        verify: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let trimmed = arg.trim_start_matches('-');
        if trimmed.len() == arg.len() {
            bail!("unexpected argument {arg:?}\n{USAGE}");
        }
        let (name, inline) = match trimmed.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (trimmed, None),
        };
        let mut value = |what: &str| -> anyhow::Result<String> {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| anyhow::anyhow!("flag -{what} needs a value\n{USAGE}"))
        };
        match name {
            "config.file" => flags.config_file = Some(PathBuf::from(value(name)?)),
            "target" => flags.target = Some(value(name)?),
            "config.expand-env" => flags.expand_env = inline.as_deref().is_none_or(|v| v == "true"),
            "config.verify" => flags.verify = inline.as_deref().is_none_or(|v| v == "true"),
            "version" => {
                println!("legato, version {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "h" | "help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown flag -{other}\n{USAGE}"),
        }
    }
    Ok(Some(flags))
}

fn main() -> std::process::ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if cli::is_subcommand(args.get(1).map(std::ffi::OsString::as_os_str)) {
        return cli::main(args);
    }
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("legato: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Opts the process out of transparent huge pages unless `MIMALLOC_ALLOW_THP` says otherwise.
/// mimalloc asks for huge pages on its arenas; under ingest every page it takes back from the
/// OS is then faulted in as 2 MiB the kernel must zero, which was a fifth of ingest CPU
/// (clear_page in perf) and cost 20% of throughput (docs/benchmarks.md).
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none()
        && let Err(e) = nix::sys::prctl::set_thp_disable(true)
    {
        eprintln!("legato: could not opt out of transparent huge pages: {e}");
    }
}

/// mimalloc gives freed memory back to the OS `MIMALLOC_PURGE_DELAY` ms after it is freed
/// (1000 by default): under ingest a second of churn (request bodies, decoded batches,
/// encoder buffers) is hundreds of MiB that would count against the memory bound
/// (`ingester.max_resident_bytes`). The server asks for 50 ms (about 10% more CPU per span
/// for 57% of the peak RSS at the maximum rate; docs/benchmarks.md). mimalloc reads its options
/// when the process starts, so the server re-executes itself once with the variable set; a
/// value already in the environment is kept, and a failed re-execution only costs memory.
fn purge_freed_memory_promptly() {
    #[cfg(all(unix, not(feature = "system-alloc")))]
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        use std::os::unix::process::CommandExt;
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => return eprintln!("legato: could not find its own executable to set MIMALLOC_PURGE_DELAY: {e}"),
        };
        let e = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("MIMALLOC_PURGE_DELAY", "50")
            .exec();
        eprintln!("legato: could not re-execute with MIMALLOC_PURGE_DELAY=50: {e}");
    }
}

fn run() -> anyhow::Result<()> {
    disable_transparent_huge_pages();
    let Some(flags) = parse_flags()? else {
        return Ok(());
    };
    let mut cfg = match &flags.config_file {
        Some(path) => config::Config::load(path, flags.expand_env)?,
        None => config::Config::default(),
    };
    if let Some(target) = flags.target {
        cfg.target = target;
    }
    cfg.validate()?;
    if flags.verify {
        println!("config ok (target {})", cfg.target);
        return Ok(());
    }
    purge_freed_memory_promptly();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{},h2=warn,hyper=warn", cfg.server.log_level)));
    // Colours only on a terminal: log files and container logs get plain text.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("legato")
        .build()?;
    runtime.block_on(app::run(cfg))
}
