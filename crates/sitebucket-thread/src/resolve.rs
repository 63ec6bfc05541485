//! [`Resolver`]: how a driver turns the core's `(host, port)` into addresses, and the
//! short-lived thread that does it off a driver's thread.
//!
//! No socket lives here: a resolver only maps a name to addresses. Which address to connect
//! to, and what a failure means, stay with the driver and the core.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;

/// The name of the threads that run lookups.
pub const RESOLVE_THREAD_NAME: &str = "sitebucket-resolve";

/// A resolver function: the addresses of `(host, port)`, in the order to try them.
type LookupFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// Turns a host name and port into the addresses to connect to.
///
/// The default is the system resolver (`(host, port).to_socket_addrs()`, i.e.
/// `getaddrinfo`). [`Resolver::new`] takes any function instead (your own DNS client, a
/// cache), and [`Resolver::fixed`] a fixed map of names. An IP literal never reaches the
/// function: [`resolve`](Resolver::resolve) and [`spawn_lookup`](Resolver::spawn_lookup)
/// answer it at once.
///
/// Drivers (`StdDriver::with_resolver`, `MioDriver::with_resolver`) run every lookup of a
/// name on a short-lived thread of its own ([`spawn_lookup`](Resolver::spawn_lookup)), so
/// a slow or hung lookup never holds up a stop or another stream. A lookup cannot be
/// cancelled: one whose answer is no longer wanted ends on its own and its answer is dropped.
#[derive(Clone, Default)]
pub struct Resolver {
    /// `None`: the system resolver.
    custom: Option<Arc<LookupFn>>,
}

impl Resolver {
    /// The system resolver (`ToSocketAddrs`, i.e. `getaddrinfo`).
    pub const fn system() -> Self {
        Self { custom: None }
    }

    /// A resolver calling `lookup(host, port)` for every name (never for an IP literal).
    /// It runs on a lookup thread and may block; an empty list counts as `NotFound`.
    pub fn new(
        lookup: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            custom: Some(Arc::new(lookup)),
        }
    }

    /// A resolver answering from a fixed map of host names (matched without regard to
    /// ASCII case) to addresses; any other name fails with `NotFound`. It never asks the
    /// system.
    pub fn fixed<N: Into<String>>(entries: impl IntoIterator<Item = (N, IpAddr)>) -> Self {
        let entries: Vec<(String, IpAddr)> = entries
            .into_iter()
            .map(|(name, ip)| (name.into().to_ascii_lowercase(), ip))
            .collect();
        Self::new(move |host, port| {
            let addrs: Vec<SocketAddr> = entries
                .iter()
                .filter(|(name, _)| name.eq_ignore_ascii_case(host))
                .map(|(_, ip)| SocketAddr::new(*ip, port))
                .collect();
            if addrs.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{host} is not in the fixed address map"),
                ));
            }
            Ok(addrs)
        })
    }

    /// Whether this is the system resolver.
    pub fn is_system(&self) -> bool {
        self.custom.is_none()
    }

    /// The address of `host:port` when `host` is an IP literal (IPv6 without brackets, as
    /// the core hands it over): no lookup is needed.
    pub fn literal(host: &str, port: u16) -> Option<SocketAddr> {
        host.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, port))
    }

    /// The addresses of `host:port`, resolved in the calling thread (it blocks for the
    /// lookup). An IP literal is answered at once; an empty answer is a `NotFound` error.
    pub fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        if let Some(addr) = Self::literal(host, port) {
            return Ok(vec![addr]);
        }
        let addrs = match &self.custom {
            Some(lookup) => lookup(host, port)?,
            None => (host, port).to_socket_addrs()?.collect(),
        };
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host} has no address"),
            ));
        }
        Ok(addrs)
    }

    /// Resolves `host:port` on a new thread named [`RESOLVE_THREAD_NAME`] and hands the
    /// answer to `deliver` there. The thread ends once `deliver` returns; nobody joins it.
    /// A resolver function that panics delivers an error. An error here means the thread
    /// could not be started (`deliver` is then dropped uncalled).
    ///
    /// Callers answer IP literals themselves ([`literal`](Resolver::literal)) rather than
    /// start a thread for them.
    pub fn spawn_lookup(
        &self,
        host: &str,
        port: u16,
        deliver: impl FnOnce(io::Result<Vec<SocketAddr>>) + Send + 'static,
    ) -> io::Result<()> {
        let resolver = self.clone();
        let host = host.to_owned();
        std::thread::Builder::new()
            .name(RESOLVE_THREAD_NAME.into())
            .spawn(move || {
                // A panicking resolver function is an answer too: the driver must not wait
                // for one that never comes.
                let answer =
                    panic::catch_unwind(AssertUnwindSafe(|| resolver.resolve(&host, port)))
                        .unwrap_or_else(|_| Err(io::Error::other("the resolver panicked")));
                deliver(answer)
            })
            .map(drop)
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.custom {
            None => "Resolver(system)",
            Some(_) => "Resolver(custom)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn literals_are_answered_without_the_lookup() {
        let never = Resolver::new(|host, _| panic!("looked up {host}"));
        assert_eq!(
            never.resolve("::1", 443).unwrap(),
            vec![SocketAddr::new(
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                443
            )]
        );
        assert_eq!(
            never.resolve("127.0.0.1", 80).unwrap(),
            vec![SocketAddr::from(([127, 0, 0, 1], 80))]
        );
        assert_eq!(Resolver::literal("stream.test", 80), None);
        assert_eq!(
            Resolver::literal("[::1]", 80),
            None,
            "brackets are not a literal"
        );
    }

    #[test]
    fn a_custom_function_answers_names_and_empty_means_not_found() {
        let custom = Resolver::new(|host, port| match host {
            "one.test" => Ok(vec![SocketAddr::from(([10, 0, 0, 1], port))]),
            "none.test" => Ok(vec![]),
            _ => Err(io::Error::new(io::ErrorKind::ConnectionRefused, "no")),
        });
        assert!(!custom.is_system());
        assert_eq!(
            custom.resolve("one.test", 8080).unwrap(),
            vec![SocketAddr::from(([10, 0, 0, 1], 8080))]
        );
        assert_eq!(
            custom.resolve("none.test", 1).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            custom.resolve("other.test", 1).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused,
            "the function's error kind is kept"
        );
        assert_eq!(format!("{custom:?}"), "Resolver(custom)");
        assert_eq!(format!("{:?}", Resolver::default()), "Resolver(system)");
        assert!(Resolver::default().is_system());
    }

    #[test]
    fn a_fixed_map_matches_names_in_any_case() {
        let fixed = Resolver::fixed([
            ("Stream.Test", IpAddr::from([127, 0, 0, 1])),
            ("stream.test", IpAddr::from([127, 0, 0, 2])),
        ]);
        assert_eq!(
            fixed.resolve("STREAM.test", 99).unwrap(),
            vec![
                SocketAddr::from(([127, 0, 0, 1], 99)),
                SocketAddr::from(([127, 0, 0, 2], 99))
            ]
        );
        assert_eq!(
            fixed.resolve("localhost", 99).unwrap_err().kind(),
            io::ErrorKind::NotFound,
            "a fixed map never asks the system"
        );
    }

    #[test]
    fn a_lookup_runs_on_a_named_thread_of_its_own() {
        let (tx, rx) = mpsc::channel();
        let caller = std::thread::current().id();
        let resolver = Resolver::new(move |host, port| {
            let me = std::thread::current();
            assert_ne!(me.id(), caller, "not on the caller's thread");
            assert_eq!(me.name(), Some(RESOLVE_THREAD_NAME));
            Ok(vec![SocketAddr::from((
                [127, 0, 0, 1],
                port + host.len() as u16,
            ))])
        });
        resolver
            .spawn_lookup("abc", 10, move |result| {
                let _ = tx.send(result.map_err(|e| e.kind()));
            })
            .unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, Ok(vec![SocketAddr::from(([127, 0, 0, 1], 13))]));
    }

    #[test]
    fn a_panicking_resolver_still_delivers_an_answer() {
        let (tx, rx) = mpsc::channel();
        Resolver::new(|_, _| panic!("resolver test panic"))
            .spawn_lookup("boom.test", 1, move |result| {
                let _ = tx.send(result.map_err(|e| e.kind()));
            })
            .unwrap();
        let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(got, Err(io::ErrorKind::Other));
    }
}
