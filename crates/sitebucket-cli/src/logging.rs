//! The log on stderr: `-v`/`-q` or `RUST_LOG` choose what is shown, `--log-format` how.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::args::{LogArgs, LogFormat};

/// The filter: `-v` / `-q` when given (they win), else `RUST_LOG` when set and valid,
/// else `info`. Returns the filter and, for a `RUST_LOG` that does not parse, why.
pub(crate) fn filter(args: &LogArgs, rust_log: Option<&str>) -> (EnvFilter, Option<String>) {
    let level = match (args.verbose, args.quiet) {
        (0, 0) => None,
        (1, _) => Some("debug"),
        (v, _) if v >= 2 => Some("trace"),
        (_, 1) => Some("warn"),
        _ => Some("error"),
    };
    if let Some(level) = level {
        return (EnvFilter::new(level), None);
    }
    match rust_log.filter(|v| !v.trim().is_empty()) {
        None => (EnvFilter::new("info"), None),
        Some(directives) => match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new("info"),
                Some(format!("ignoring RUST_LOG={directives:?}: {e}")),
            ),
        },
    }
}

/// Installs the stderr logger.
pub(crate) fn init(args: &LogArgs) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (filter, problem) = filter(args, rust_log.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_env_filter(filter);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_args(verbose: u8, quiet: u8) -> LogArgs {
        LogArgs {
            verbose,
            quiet,
            log_format: LogFormat::Text,
        }
    }

    #[test]
    fn flags_win_over_rust_log_which_wins_over_the_default() {
        let shown = |args: LogArgs, env: Option<&str>| filter(&args, env).0.to_string();
        assert_eq!(shown(log_args(0, 0), None), "info");
        assert_eq!(shown(log_args(0, 0), Some("")), "info");
        assert_eq!(shown(log_args(0, 0), Some("debug")), "debug");
        assert_eq!(shown(log_args(1, 0), Some("error")), "debug");
        assert_eq!(shown(log_args(3, 0), None), "trace");
        assert_eq!(shown(log_args(0, 1), Some("trace")), "warn");
        assert_eq!(shown(log_args(0, 2), None), "error");
        let (bad, why) = filter(&log_args(0, 0), Some("=^="));
        assert_eq!(bad.to_string(), "info");
        assert!(why.unwrap().contains("ignoring RUST_LOG"));
    }
}
