//! Connecting to a `(host, port)`: the lookup with a [`Resolver`] off the executor, then the
//! addresses in turn over smol's sockets.

use std::io;
use std::net::SocketAddr;

use async_net::TcpStream;

use sitebucket_thread::Resolver;

/// Connects to the addresses of `host:port` in turn and returns the first socket that
/// connects, or the last attempt's error (`NotFound` if there was no address).
///
/// An IP literal is connected to at once; a name is looked up by `resolver`
/// ([`lookup`]). The future never blocks its executor and holds no thread: dropping it (a
/// stop, a deadline) abandons the lookup, whose answer is then dropped.
pub(crate) async fn connect(resolver: Resolver, host: String, port: u16) -> io::Result<TcpStream> {
    let addrs = match Resolver::literal(&host, port) {
        Some(addr) => vec![addr],
        None => lookup(&resolver, &host, port).await?,
    };
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(socket) => return Ok(socket),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The addresses of `host:port`, looked up by `resolver` on a lookup thread of its own
/// ([`Resolver::spawn_lookup`]) that hands its answer over a one-slot channel.
async fn lookup(resolver: &Resolver, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let (answer, answered) = async_channel::bounded(1);
    resolver.spawn_lookup(host, port, move |result| {
        // The one answer fits the empty slot; it fails only when nobody waits any more
        // (the future was dropped), and then nobody wants it.
        let _ = answer.try_send(result);
    })?;
    match answered.recv().await {
        Ok(result) => result,
        // The lookup thread always answers (a panicking resolver too), so this is a thread
        // that ended without delivering.
        Err(_) => Err(io::Error::other("the lookup ended without an answer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, TcpListener};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::Duration;

    use futures_lite::future;
    use sitebucket_thread::RESOLVE_THREAD_NAME;

    /// A port nothing listens on: bound, then closed.
    fn closed_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn a_literal_connects_without_a_lookup() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        let resolver = Resolver::new(move |_, _| {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(io::ErrorKind::NotFound.into())
        });
        let socket = smol::block_on(connect(resolver, "127.0.0.1".into(), port)).unwrap();
        assert_eq!(socket.peer_addr().unwrap().port(), port);
        assert_eq!(asked.load(Ordering::SeqCst), 0, "no lookup for a literal");
    }

    #[test]
    fn a_name_is_looked_up_on_a_lookup_thread_and_its_addresses_tried_in_turn() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let refused = closed_port();
        let threads = Arc::new(Mutex::new(Vec::new()));
        let seen = threads.clone();
        let resolver = Resolver::new(move |host, asked| {
            assert_eq!((host, asked), ("two.test", port));
            seen.lock()
                .unwrap()
                .push(std::thread::current().name().map(str::to_owned));
            // The first address refuses; the second listens.
            Ok(vec![
                SocketAddr::from(([127, 0, 0, 1], refused)),
                SocketAddr::from(([127, 0, 0, 1], port)),
            ])
        });
        let socket = smol::block_on(connect(resolver, "two.test".into(), port)).unwrap();
        assert_eq!(socket.peer_addr().unwrap().port(), port);
        assert_eq!(
            *threads.lock().unwrap(),
            vec![Some(RESOLVE_THREAD_NAME.to_owned())]
        );
    }

    #[test]
    fn the_last_error_is_returned_when_no_address_connects() {
        let refused = closed_port();
        let resolver = Resolver::fixed([("down.test", IpAddr::from([127, 0, 0, 1]))]);
        let err = smol::block_on(connect(resolver, "down.test".into(), refused)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_failed_or_panicking_lookup_is_a_connect_error() {
        let missing = Resolver::fixed([("other.test", IpAddr::from([127, 0, 0, 1]))]);
        let err = smol::block_on(connect(missing, "missing.test".into(), 1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let panicking = Resolver::new(|_, _| panic!("resolver test panic"));
        let err = smol::block_on(connect(panicking, "boom.test".into(), 1)).unwrap_err();
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
        let mut attempt = Box::pin(connect(resolver, "slow.test".into(), 1));
        // One poll starts the lookup, which hangs.
        assert!(smol::block_on(future::poll_once(&mut attempt)).is_none());
        drop(attempt);
        drop(gate);
        // The lookup ends on its own and its answer goes nowhere (no panic, no hang).
        ended.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
