//! What every example needs: where to connect, whom to follow, as whom, and for how long.
//!
//! - the stream URL: the first argument, else `SITEBUCKET_URL`;
//! - the users: the second argument, comma-separated ids, else the users `sitebucket serve`
//!   streams for (`783214,6253282`);
//! - the credentials: `SITEBUCKET_CONSUMER_KEY`, `SITEBUCKET_CONSUMER_SECRET`,
//!   `SITEBUCKET_TOKEN`, `SITEBUCKET_TOKEN_SECRET` (the lines `sitebucket serve` prints);
//! - `SITEBUCKET_CA_FILE`: an extra root certificate (PEM), for `sitebucket serve --tls`;
//! - `SITEBUCKET_EXAMPLE_MESSAGES` (default 20) and `SITEBUCKET_EXAMPLE_SECS` (default 30):
//!   each example stops after that many messages or seconds, whichever comes first.

// Each example uses a different part of this module.
#![allow(dead_code)]

use std::error::Error;
use std::time::Duration;

use sitebucket::{Config, ConfigBuilder, Credentials};

/// The users `sitebucket serve` has messages for (the first two of its corpus).
pub(crate) const SERVE_USERS: [u64; 2] = [783_214, 6_253_282];

/// The settings of one run.
pub(crate) struct Settings {
    /// The stream URL.
    pub url: String,
    /// The users to follow.
    pub follow: Vec<u64>,
    /// Stop after this many messages.
    pub messages: usize,
    /// Stop after this long.
    pub time: Duration,
}

/// Reads the settings from the arguments and the environment.
pub(crate) fn settings() -> Result<Settings, Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("SITEBUCKET_URL").ok())
        .ok_or(
            "usage: cargo run --example <name> -- URL [ID,ID,...]\n\
             (start a server with `sitebucket serve` and paste the lines it prints)",
        )?;
    let follow = match args.next() {
        Some(ids) => ids
            .split(',')
            .map(|id| {
                id.trim()
                    .parse()
                    .map_err(|e| format!("user id {id:?}: {e}"))
            })
            .collect::<Result<Vec<u64>, _>>()?,
        None => SERVE_USERS.to_vec(),
    };
    let number = |name: &str, default: u64| -> Result<u64, Box<dyn Error>> {
        match std::env::var(name) {
            Ok(value) => Ok(value
                .parse()
                .map_err(|e| format!("{name}={value:?}: {e}"))?),
            Err(_) => Ok(default),
        }
    };
    Ok(Settings {
        url,
        follow,
        messages: usize::try_from(number("SITEBUCKET_EXAMPLE_MESSAGES", 20)?)?,
        time: Duration::from_secs(number("SITEBUCKET_EXAMPLE_SECS", 30)?),
    })
}

/// A config builder for `follow` on the settings' URL, with the credentials from the
/// environment and the extra root certificate, if any.
pub(crate) fn builder(
    settings: &Settings,
    follow: &[u64],
) -> Result<ConfigBuilder, Box<dyn Error>> {
    let mut builder = Config::builder(follow.iter().copied(), Credentials::from_env()?)
        .url(settings.url.clone())
        .gzip(true);
    if let Ok(path) = std::env::var("SITEBUCKET_CA_FILE") {
        let pem = std::fs::read(&path).map_err(|e| format!("SITEBUCKET_CA_FILE {path}: {e}"))?;
        builder = builder.extra_root_certs_pem(pem);
    }
    Ok(builder)
}
