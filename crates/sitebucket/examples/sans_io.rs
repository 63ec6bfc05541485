//! The sans-IO core in a loop of your own: a blocking `std::net::TcpStream`, no driver crate.
//!
//! Run with a server of your own (`sitebucket serve` prints the URL and credentials):
//!
//! ```sh
//! cargo run -p sitebucket-cli -- serve --scenario flaky    # in another terminal; paste its exports
//! cargo run -p sitebucket --example sans_io -- http://127.0.0.1:PORT/1.1/site.json
//! ```
//!
//! The core decides everything (when to connect, what to send, how long to back off, when a
//! silent connection has stalled); this loop only moves bytes and waits for the deadline the
//! core gives. TLS (`https://`) works the same way: the core encrypts and decrypts, the loop
//! still moves bytes. After every `handle_*` call, `poll_action` is drained until it returns
//! `Wait` or `Finished`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sitebucket::{Action, SiteStream, StreamEvent};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = common::settings()?;
    let config = common::builder(&settings, &settings.follow)?.build()?;
    let mut stream = SiteStream::new(config);
    let mut socket: Option<TcpStream> = None;
    let mut buffer = vec![0; 64 * 1024];
    let (started, mut messages) = (Instant::now(), 0);

    loop {
        // Drain: do what the core asks until it waits or is finished.
        let deadline = loop {
            match stream.poll_action(Instant::now()) {
                Action::Connect { host, port, tls } => {
                    println!(
                        "connecting to {host}:{port}{}",
                        if tls { " (TLS)" } else { "" }
                    );
                    match TcpStream::connect((host.as_str(), port)) {
                        Ok(connected) => {
                            socket = Some(connected);
                            stream.handle_connected(Instant::now(), unix_secs());
                        }
                        Err(e) => stream.handle_connect_failed(Instant::now(), e.kind()),
                    }
                }
                Action::Transmit(bytes) => {
                    let sent = socket.as_mut().map(|s| s.write_all(&bytes));
                    if !matches!(sent, Some(Ok(()))) {
                        stream.handle_eof(Instant::now()); // the connection is gone
                    }
                }
                Action::Event(StreamEvent::Message(json)) => {
                    messages += 1;
                    println!("{}", String::from_utf8_lossy(&json));
                }
                Action::Event(event) => eprintln!("event: {event:?}"),
                Action::Close => socket = None,
                Action::Wait(deadline) => break deadline,
                Action::Finished(outcome) => {
                    println!("{messages} messages; finished: {outcome}");
                    return Ok(());
                }
            }
        };
        if (messages >= settings.messages || started.elapsed() >= settings.time)
            && !stream.disconnect_issued()
        {
            stream.disconnect(); // the core closes the connection and finishes
            continue;
        }

        // Wait for bytes or the deadline, whichever comes first, and tell the core.
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
            .min(Duration::from_millis(250)); // to notice the limits above in time
        match socket.as_mut() {
            Some(connected) => {
                connected.set_read_timeout(Some(wait))?;
                match connected.read(&mut buffer) {
                    Ok(0) => stream.handle_eof(Instant::now()),
                    Ok(n) => stream.handle_input(Instant::now(), &buffer[..n]),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        stream.handle_timeout(Instant::now())
                    }
                    Err(_) => stream.handle_eof(Instant::now()),
                }
            }
            None => {
                std::thread::sleep(wait);
                stream.handle_timeout(Instant::now());
            }
        }
    }
}

/// Wall-clock seconds, which the core signs each request with (it reads no clock itself).
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
