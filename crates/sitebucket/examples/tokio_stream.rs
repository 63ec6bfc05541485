//! The items of one stream as an async `Stream`, on a tokio runtime.
//!
//! Run with a server of your own (`sitebucket serve` prints the URL and credentials):
//!
//! ```sh
//! cargo run -p sitebucket-cli -- serve --scenario steady   # in another terminal; paste its exports
//! cargo run -p sitebucket --example tokio_stream -- http://127.0.0.1:PORT/1.1/site.json
//! ```
//!
//! It prints each message's kind (typed with `StreamItem::parse`) and each connection event
//! until it has enough messages or time is up, then stops the stream and prints how it ended.
//! Nothing here blocks the runtime: the driver's reads, timers and host-name lookups are all
//! awaited.

mod common;

use futures_lite::StreamExt;
use sitebucket::{SiteStream, StreamItem};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = common::settings()?;
    let config = common::builder(&settings, &settings.follow)?.build()?;

    let mut items = sitebucket::tokio_driver::messages(SiteStream::new(config));
    let deadline = tokio::time::sleep(settings.time);
    tokio::pin!(deadline);
    let mut seen = 0;
    while seen < settings.messages {
        let item = tokio::select! {
            item = items.next() => item,
            () = &mut deadline => break,
        };
        let Some(item) = item else { break };
        match &item {
            StreamItem::Message(_) => {
                seen += 1;
                match item.parse() {
                    Some(Ok(message)) => println!("{}", message.kind()),
                    Some(Err(error)) => eprintln!("skipped a message: {error}"),
                    None => {}
                }
            }
            StreamItem::Connected { status, reason } => eprintln!("HTTP {status} {reason}"),
            StreamItem::Reconnecting { error, retry_in } => {
                eprintln!("{error}; reconnecting in {retry_in:?}")
            }
            StreamItem::Finished(outcome) => {
                eprintln!("ended: {outcome}");
                break;
            }
            _ => {}
        }
    }
    items.stop();
    while items.next().await.is_some() {} // what was already received, then Finished
    println!("{seen} messages; ended: {:?}", items.outcome());
    Ok(())
}
