//! One Site Stream on its own thread (the std driver), with typed messages.
//!
//! Run with a server of your own (`sitebucket serve` prints the URL and credentials):
//!
//! ```sh
//! cargo run -p sitebucket-cli -- serve --scenario steady   # in another terminal; paste its exports
//! cargo run -p sitebucket --example std_listen -- http://127.0.0.1:PORT/1.1/site.json
//! ```
//!
//! It prints each message's kind, keeps the tweets (owned, past the callback) and prints the
//! first one kept as JSON, then closes the stream and prints how it ended.

mod common;

use std::sync::mpsc;

use sitebucket::{DefaultParser, ListenThread, Message, ParseError, SiteStream, StdDriver};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = common::settings()?;
    let config = common::builder(&settings, &settings.follow)?.build()?;

    // The handler runs on the stream's thread; owned messages go back to this one.
    let (kept, received) = mpsc::channel::<Message<'static>>();
    let parser = DefaultParser::new(
        move |message: Result<Message<'_>, ParseError>| match message {
            Ok(message) => {
                println!("{}", message.kind());
                let _ = kept.send(message.into_owned());
            }
            Err(error) => eprintln!("skipped a message: {error}"),
        },
    );
    let mut thread = ListenThread::spawn(StdDriver::new(), SiteStream::new(config), parser)?;

    let deadline = std::time::Instant::now() + settings.time;
    let mut messages = Vec::new();
    while messages.len() < settings.messages {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match received.recv_timeout(left) {
            Ok(message) => messages.push(message),
            Err(_) => break, // out of time, or the stream ended
        }
    }
    thread.close();
    let outcome = thread.join();

    let tweet = messages
        .iter()
        .find(|m| m.user_message().is_some_and(|u| u.kind() == "tweet"));
    if let Some(tweet) = tweet {
        println!("first tweet, kept: {}", serde_json::to_string(tweet)?);
    }
    println!(
        "{} messages; healthy at the end: {}; ended: {outcome:?}",
        messages.len(),
        thread.connection_healthy()
    );
    Ok(())
}
