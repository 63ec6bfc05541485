//! The loopback server of the out-of-process figures (a separate process from the client).
//!
//! ```text
//! bench-server firehose [--seed S] [--segment-bytes B] [--bytes N] [--notsent-lowat BYTES] [--together N]
//! bench-server idle [--tls --ca-out PATH]
//! ```
//!
//! It prints `listening <addr> ...` on stdout once it accepts connections, and exits when its
//! standard input closes, so the process that started it never has to kill it.

use std::io::{Read, Write};
use std::sync::Arc;

use sitebucket_bench::args::Args;
use sitebucket_bench::os;
use sitebucket_bench::server::{self, Firehose};

fn main() {
    let args = Args::from_env();
    // End with the parent: when our stdin closes, exit.
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
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
                .together(args.get("--together", 1)),
            );
            announce(&format!(
                "listening {addr} messages={} keep_alives={} body={} wire={} hash={}",
                firehose.messages(),
                firehose.keep_alives(),
                firehose.body_bytes(),
                firehose.wire_bytes(),
                firehose.hash()
            ));
            firehose.run(listener).unwrap_or_else(|e| fail(&e));
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
