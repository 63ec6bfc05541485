//! `sitebucket serve`: the scripted test server on 127.0.0.1, until SIGINT or SIGTERM.
//!
//! stdout gets what a user pastes into the shell that runs `sitebucket listen`: the URL and
//! (with `--tls`) the CA certificate's path as comments, the accepted credentials as
//! `export SITEBUCKET_...=...` lines, and a ready `sitebucket listen` command.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sitebucket_testserver::corpus::USER_IDS;
use sitebucket_testserver::{Credentials, Scenario, ServerOptions, TestServer};

use crate::args::{ServeApi, ServeArgs};
use crate::listen::{BEARER_VAR, CREDENTIAL_VARS};

/// Runs `sitebucket serve` and returns the process's exit status.
pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let v2 = args.api == ServeApi::V2;
    let scenario = match &args.replay {
        None if v2 => Scenario::builtin_v2(&args.scenario),
        None => Scenario::builtin(&args.scenario),
        Some(path) => match read_recording(path) {
            Ok(messages) => {
                tracing::info!(
                    "replaying {} message(s) from {}",
                    messages.len(),
                    path.display()
                );
                if v2 {
                    Scenario::replaying_v2(&args.scenario, messages)
                } else {
                    Scenario::replaying(&args.scenario, messages)
                }
            }
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        },
    };
    let Some(scenario) = scenario else {
        // clap only lets the built-in names through, and a recording has messages.
        eprintln!("error: unknown scenario {:?}", args.scenario);
        return ExitCode::from(2);
    };
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("error: cannot install the SIGINT/SIGTERM handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let options = ServerOptions {
        tls: args.tls,
        credentials: Credentials::test_default(),
        port: args.port,
        bearer_token: v2.then(|| TEST_BEARER_TOKEN.to_owned()),
    };
    let mut server = match TestServer::start(scenario, options) {
        Ok(server) => server,
        Err(e) => {
            let port = args
                .port
                .map_or("a free port".to_owned(), |p| format!("port {p}"));
            eprintln!("error: cannot start the test server on 127.0.0.1 ({port}): {e}");
            return ExitCode::from(1);
        }
    };
    let banner = banner(&server, &args.scenario);
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        // Nobody reads the banner: serve anyway, the user may still connect.
        tracing::warn!("could not print the server's address on stdout");
    }
    drop(stdout);
    tracing::info!(
        "serving scenario {:?} at {}; SIGINT or SIGTERM stops it",
        args.scenario,
        server.url()
    );
    let signal = signals.forever().next();
    let name = if signal == Some(SIGINT) {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    tracing::info!(
        "received {name}: shutting down after {} connection attempt(s)",
        server.attempts().len()
    );
    server.shutdown();
    ExitCode::SUCCESS
}

/// The messages of a `--replay` file: one JSON text per line (blank lines skipped), as
/// `sitebucket listen` prints them. A line that is not JSON is an error naming it.
pub(crate) fn read_recording(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let name = path.display();
    let text = std::fs::read(path).map_err(|e| format!("cannot read --replay {name}: {e}"))?;
    let mut messages = Vec::new();
    for (index, line) in text.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
            return Err(format!(
                "--replay {name} line {}: not a JSON message ({e}); the file holds one JSON message per line",
                index + 1
            ));
        }
        messages.push(line.to_vec());
    }
    if messages.is_empty() {
        return Err(format!(
            "--replay {name} has no message; it holds one JSON message per line"
        ));
    }
    Ok(messages)
}

/// The Bearer token `serve --api v2` accepts.
pub(crate) const TEST_BEARER_TOKEN: &str = "AAAAAAAAAAAAAAAAAAAAAsitebucket-test-bearer-token";

/// The text printed on stdout: valid shell, to paste or `eval`.
fn banner(server: &TestServer, scenario: &str) -> String {
    if let Some(v2) = server.v2() {
        let mut out = format!(
            "# sitebucket test server (X API v2), scenario {scenario}\n# URL: {}\n# Sample stream: {}\n",
            server.url(),
            server.sample_url()
        );
        let mut ca = String::new();
        if let Some(path) = server.ca_path() {
            out.push_str(&format!("# CA certificate: {}\n", path.display()));
            ca = format!(" --ca-file {}", shell_quote(&path.display().to_string()));
        }
        out.push_str("# This test Bearer token is accepted (paste it into your shell):\n");
        out.push_str(&format!(
            "export {BEARER_VAR}={}\n",
            shell_quote(v2.token())
        ));
        out.push_str(&format!(
            "# Then: sitebucket rules add --url {url} --rule 'cat has:images'{ca}\n\
             # and:  sitebucket listen --api v2-filtered --url {url}{ca}\n",
            url = server.url()
        ));
        return out;
    }
    let credentials = server.credentials();
    let values = [
        &credentials.consumer_key,
        &credentials.consumer_secret,
        &credentials.token,
        &credentials.token_secret,
    ];
    let follow: Vec<String> = USER_IDS.iter().map(u64::to_string).collect();
    let mut out = format!(
        "# sitebucket test server, scenario {scenario}\n# URL: {}\n",
        server.url()
    );
    let mut ca = String::new();
    if let Some(path) = server.ca_path() {
        out.push_str(&format!("# CA certificate: {}\n", path.display()));
        ca = format!(" --ca-file {}", shell_quote(&path.display().to_string()));
    }
    out.push_str("# These test credentials are accepted (paste them into your shell):\n");
    for (name, value) in CREDENTIAL_VARS.iter().zip(values) {
        out.push_str(&format!("export {name}={}\n", shell_quote(value)));
    }
    out.push_str(&format!(
        "# Then: sitebucket listen --url {} --follow {}{ca}\n",
        server.url(),
        follow.join(",")
    ));
    out
}

/// The value as one shell word: bare when it is plainly safe, else in single quotes.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=+@%".contains(&b));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recordings_are_one_json_message_a_line() {
        let dir = std::env::temp_dir();
        let path = dir.join(format!(
            "sitebucket-replay-unit-{}.jsonl",
            std::process::id()
        ));
        std::fs::write(&path, "{\"a\":1}\r\n\n[2]\n").unwrap();
        assert_eq!(
            read_recording(&path),
            Ok(vec![b"{\"a\":1}".to_vec(), b"[2]".to_vec()])
        );
        std::fs::write(&path, "{\"a\":1}\n{oops\n").unwrap();
        let error = read_recording(&path).unwrap_err();
        assert!(error.contains("line 2: not a JSON message"), "{error}");
        std::fs::write(&path, "\n\n").unwrap();
        assert!(read_recording(&path)
            .unwrap_err()
            .contains("has no message"));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("abc-123_x"), "abc-123_x");
        assert_eq!(shell_quote("/tmp/ca file.pem"), "'/tmp/ca file.pem'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn the_banner_is_shell_with_the_url_and_credentials() {
        let server =
            TestServer::start(Scenario::builtin("steady").unwrap(), ServerOptions::tls()).unwrap();
        let text = banner(&server, "steady");
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("export SITEBUCKET_"),
                "{line}"
            );
        }
        assert!(text.contains(&format!("# URL: {}\n", server.url())));
        let ca = server.ca_path().unwrap().display().to_string();
        assert!(text.contains(&format!("# CA certificate: {ca}\n")));
        let credentials = Credentials::test_default();
        assert!(text.contains(&format!(
            "export SITEBUCKET_CONSUMER_SECRET={}\n",
            credentials.consumer_secret
        )));
        assert!(text.contains(&format!("export SITEBUCKET_TOKEN={}\n", credentials.token)));
        assert!(text.contains("--follow "));
    }

    #[test]
    fn the_v2_banner_gives_the_bearer_token() {
        let options = ServerOptions {
            bearer_token: Some(TEST_BEARER_TOKEN.into()),
            ..ServerOptions::plain()
        };
        let server = TestServer::start(Scenario::builtin_v2("steady").unwrap(), options).unwrap();
        let text = banner(&server, "steady");
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("export SITEBUCKET_"),
                "{line}"
            );
        }
        assert!(text.contains(&format!("export {BEARER_VAR}={TEST_BEARER_TOKEN}\n")));
        assert!(text.contains("--api v2-filtered"));
        assert!(text.contains("/2/tweets/search/stream"));
    }
}
