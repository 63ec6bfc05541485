//! Connecting to a `(host, port)`: the lookup with a [`Resolver`] off the executor, then the
//! addresses in turn over the runtime's sockets.

use std::io;
use std::net::SocketAddr;

use sitebucket_thread::Resolver;

use crate::runtime::Runtime;
use crate::signal::answer;

/// Connects to the addresses of `host:port` in turn and returns the first socket that
/// connects, or the last attempt's error (`NotFound` if there was no address).
///
/// An IP literal is connected to at once; a name is looked up by `resolver` ([`lookup`]).
/// The future never blocks its executor and holds no thread: dropping it (a stop, a
/// deadline) abandons the lookup, whose answer is then dropped, and closes a half-open
/// socket.
pub(crate) async fn connect<R: Runtime>(
    resolver: Resolver,
    host: String,
    port: u16,
) -> io::Result<R::Socket> {
    let addrs = match Resolver::literal(&host, port) {
        Some(addr) => vec![addr],
        None => lookup(&resolver, &host, port).await?,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match R::connect(addr).await {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The addresses of `host:port`, looked up by `resolver` on a lookup thread of its own
/// ([`Resolver::spawn_lookup`]) that hands its answer to a one-answer channel this awaits.
async fn lookup(resolver: &Resolver, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let (tx, answered) = answer();
    // The answer goes nowhere when nobody waits any more (the future was dropped): nobody
    // wants it.
    resolver.spawn_lookup(host, port, move |result| tx.send(result))?;
    match answered.await {
        Some(result) => result,
        // The lookup thread always answers (a panicking resolver too), so this is a thread
        // that ended without delivering.
        None => Err(io::Error::other("the lookup ended without an answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;

    use futures_lite::future;
    use sitebucket_thread::RESOLVE_THREAD_NAME;

    use crate::fake::{Fake, Net, Peer};

    #[test]
    fn a_literal_connects_without_a_lookup() {
        let net = Net::new();
        let addr = net.listen(Peer::Silent);
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let resolver = Resolver::new(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(io::ErrorKind::NotFound.into())
        });
        let socket = future::block_on(connect::<Fake>(
            resolver,
            addr.ip().to_string(),
            addr.port(),
        ))
        .unwrap();
        assert_eq!(socket.peer(), addr);
        assert_eq!(asked.load(Ordering::SeqCst), 0, "no lookup for a literal");
    }

    #[test]
    fn a_name_is_looked_up_on_a_lookup_thread_and_its_addresses_tried_in_turn() {
        let net = Net::new();
        let listening = net.listen(Peer::Silent);
        let refused = net.unused();
        let threads = Arc::new(Mutex::new(Vec::new()));
        let seen = threads.clone();
        let resolver = Resolver::new(move |host, asked| {
            assert_eq!((host, asked), ("two.test", 7));
            seen.lock()
                .unwrap()
                .push(std::thread::current().name().map(str::to_owned));
            // The first address refuses; the second listens.
            Ok(vec![refused, listening])
        });
        let socket = future::block_on(connect::<Fake>(resolver, "two.test".into(), 7)).unwrap();
        assert_eq!(socket.peer(), listening);
        assert_eq!(net.attempts(), vec![refused, listening]);
        assert_eq!(
            *threads.lock().unwrap(),
            vec![Some(RESOLVE_THREAD_NAME.to_owned())]
        );
    }

    #[test]
    fn the_last_error_is_returned_when_no_address_connects() {
        let net = Net::new();
        let refused = net.unused();
        let resolver = Resolver::fixed([("down.test", refused.ip())]);
        let err = future::block_on(connect::<Fake>(
            resolver,
            "down.test".into(),
            refused.port(),
        ))
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_failed_or_panicking_lookup_is_a_connect_error() {
        let missing = Resolver::fixed([("other.test", IpAddr::from([127, 0, 0, 1]))]);
        let err = future::block_on(connect::<Fake>(missing, "missing.test".into(), 1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let panicking = Resolver::new(|_, _| panic!("resolver test panic"));
        let err = future::block_on(connect::<Fake>(panicking, "boom.test".into(), 1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
    }

    #[test]
    fn dropping_the_future_abandons_a_hung_lookup() {
        let (gate, wait) = mpsc::channel::<()>();
        let wait = Mutex::new(wait);
        let (ended_tx, ended) = mpsc::channel::<()>();
        let ended_tx = Mutex::new(ended_tx);
        let resolver = Resolver::new(move |_, port| {
            // Blocks until the gate's sender is dropped.
            let _ = wait.lock().unwrap().recv();
            let _ = ended_tx.lock().unwrap().send(());
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        });
        let mut attempt = Box::pin(connect::<Fake>(resolver, "slow.test".into(), 1));
        // One poll starts the lookup, which hangs.
        assert!(future::block_on(future::poll_once(&mut attempt)).is_none());
        drop(attempt);
        drop(gate);
        // The lookup ends on its own and its answer goes nowhere (no panic, no hang).
        ended.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
