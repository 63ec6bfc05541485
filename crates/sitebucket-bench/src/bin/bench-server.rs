//! The loopback server of the out-of-process figures (a separate process from the client).
//!
//! ```text
//! bench-server firehose [--seed S] [--segment-bytes B] [--bytes N] [--notsent-lowat BYTES] [--together N] [--gate] [--rate MSGS_PER_S]
//! bench-server idle [--tls --ca-out PATH]
//! ```
//!
//! It prints `listening <addr> ...` on stdout once it accepts connections, and exits when its
//! standard input closes, so the process that started it never has to kill it. With `--gate`,
//! every connection waits after the response head, printing `waiting` on stdout, until a
//! line `go` arrives on standard input (each `go` releases the connections waiting then).
//! With `--rate`, every connection is paced to about that many messages per second.

use std::io::{BufRead, Write};
use std::sync::{Arc, OnceLock};

use sitebucket_bench::args::Args;
use sitebucket_bench::os;
use sitebucket_bench::server::{self, Firehose};

fn main() {
    let args = Args::from_env();
    // The firehose, once made, for `go` lines.
    let gate: Arc<OnceLock<Arc<Firehose>>> = Arc::default();
    // End with the parent: when our stdin closes, exit.
    std::thread::spawn({
        let gate = gate.clone();
        move || {
            let mut line = String::new();
            let mut stdin = std::io::stdin().lock();
            while matches!(stdin.read_line(&mut line), Ok(n) if n > 0) {
                if line.trim() == "go" {
                    if let Some(firehose) = gate.get() {
                        firehose.go();
                    }
                }
                line.clear();
            }
            std::process::exit(0);
        }
    });
    let (listener, addr) = server::bind_loopback().unwrap_or_else(|e| fail(&e));
    match args.mode() {
        Some("firehose") => {
            // Up to one connection per busy stream of bench-busy.
            os::raise_fd_limit(1 << 16);
            let firehose = Arc::new(
                Firehose::new(
                    args.get("--seed", 20_240_601u64),
                    args.get("--segment-bytes", 16usize << 20),
                    args.get("--bytes", 1u64 << 30),
                )
                .notsent_lowat(
                    args.value("--notsent-lowat")
                        .map(|_| args.get("--notsent-lowat", 0)),
                )
                .together(args.get("--together", 1))
                .gated(args.has("--gate"))
                .paced(args.value("--rate").map(|_| args.get("--rate", 0u64))),
            );
            let _ = gate.set(firehose.clone());
            announce(&format!(
                "listening {addr} messages={} keep_alives={} body={} wire={} hash={}",
                firehose.messages(),
                firehose.keep_alives(),
                firehose.body_bytes(),
                firehose.wire_bytes(),
                firehose.hash()
            ));
            firehose
                .run_with(listener, Arc::new(|| announce("waiting")))
                .unwrap_or_else(|e| fail(&e));
        }
        Some("idle") => {
            os::raise_fd_limit(1 << 20);
            let tls = if args.has("--tls") {
                let material = server::tls_material().unwrap_or_else(|e| fail(&e));
                let path = args.value("--ca-out").unwrap_or("bench-ca.pem");
                std::fs::write(path, &material.ca_pem).unwrap_or_else(|e| fail(&e));
                Some(material.config)
            } else {
                None
            };
            announce(&format!("listening {addr}"));
            server::run_idle(listener, tls, |_| {}).unwrap_or_else(|e| fail(&e));
        }
        _ => {
            eprintln!("usage: bench-server firehose|idle [options]");
            std::process::exit(2);
        }
    }
}

fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn fail(e: &dyn std::fmt::Display) -> ! {
    eprintln!("bench-server: {e}");
    std::process::exit(1)
}
