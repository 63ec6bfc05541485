//! The messages of one stream as an async `Stream`, on smol.
//!
//! Run with a server of your own (`sitebucket serve` prints the URL and credentials):
//!
//! ```sh
//! cargo run -p sitebucket-cli -- serve --scenario steady   # in another terminal; paste its exports
//! cargo run -p sitebucket --example smol_stream -- http://127.0.0.1:PORT/1.1/site.json
//! ```
//!
//! It prints each message's kind (typed with `Message::from_slice`) until it has enough or
//! time is up, then stops the stream and prints how it ended.

mod common;

use futures_lite::{FutureExt, StreamExt};
use sitebucket::{Message, SiteStream, StreamItem};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = common::settings()?;
    let config = common::builder(&settings, &settings.follow)?.build()?;

    smol::block_on(async {
        let mut messages = sitebucket::smol_driver::messages(SiteStream::new(config));
        let mut seen = 0;
        let timer = async {
            smol::Timer::after(settings.time).await;
            None::<StreamItem>
        };
        let mut timer = std::pin::pin!(timer);
        while seen < settings.messages {
            // The next item, or nothing once the time is up.
            let Some(item) = messages.next().or(timer.as_mut()).await else {
                break;
            };
            match &item {
                StreamItem::Message(bytes) => {
                    seen += 1;
                    match Message::from_slice(bytes) {
                        Ok(message) => println!("{}", message.kind()),
                        Err(error) => eprintln!("skipped a message: {error}"),
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
        messages.stop();
        while messages.next().await.is_some() {} // what was already received, then Finished
        println!("{seen} messages; ended: {:?}", messages.outcome());
    });
    Ok(())
}
