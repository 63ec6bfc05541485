//! [`Resolver`]: how a driver turns the core's `(host, port)` into addresses, and the small
//! pool of threads that does it off a driver's thread.
//!
//! No socket lives here: a resolver only maps a name to addresses. Which address to connect
//! to, and what a failure means, stay with the driver and the core.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};

/// The name of the threads that run lookups.
pub const RESOLVE_THREAD_NAME: &str = "sitebucket-resolve";

/// The most lookup threads one resolver (with its clones) runs at once. A resolver that never
/// returns holds at most this many threads, however many streams wait on it and however
/// often they retry.
pub const MAX_LOOKUP_THREADS: usize = 4;

/// The most callers one lookup in flight keeps waiting for its answer. Past it, the caller
/// that has waited longest is let go (its `deliver` is dropped uncalled, as for a lookup
/// that could not start): by then its own deadline has long ended its wait, as callers of
/// an abandoned attempt do not leave the list on their own.
pub const MAX_WAITERS_PER_LOOKUP: usize = 4096;

/// A resolver function: the addresses of `(host, port)`, in the order to try them.
type LookupFn = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

/// Hands one lookup's answer to one caller.
type Deliver = Box<dyn FnOnce(io::Result<Vec<SocketAddr>>) + Send>;

/// Turns a host name and port into the addresses to connect to.
///
/// The default is the system resolver (`(host, port).to_socket_addrs()`, i.e.
/// `getaddrinfo`). [`Resolver::new`] takes any function instead (your own DNS client, a
/// cache), and [`Resolver::fixed`] a fixed map of names. An IP literal never reaches the
/// function: [`resolve`](Resolver::resolve) and [`spawn_lookup`](Resolver::spawn_lookup)
/// answer it at once.
///
/// Drivers (`StdDriver::with_resolver`, `MioDriver::with_resolver`, …) run lookups off
/// their own threads ([`spawn_lookup`](Resolver::spawn_lookup)), so a slow or hung lookup
/// never holds up a stop or another stream. Lookups are bounded however many streams ask:
/// - one lookup of a `(host, port)` is in flight at a time: every stream and control call
///   that asks for it meanwhile waits for that one's answer;
/// - lookups run on a pool of at most [`MAX_LOOKUP_THREADS`] threads per resolver (shared
///   by its clones; the system resolver's pool is shared by the whole process), started
///   when there is work and ended when there is none; names beyond that wait their turn.
///
/// A lookup cannot be cancelled: a caller that gives up (its attempt's deadline passed, its
/// stream stopped) simply drops the answer when it comes.
#[derive(Clone, Default)]
pub struct Resolver {
    /// `None`: the system resolver.
    custom: Option<Arc<Custom>>,
}

/// A resolver function and its own pool.
struct Custom {
    lookup: Box<LookupFn>,
    pool: Pool,
}

/// The lookups of one resolver: those asked for and not answered, and its threads.
struct Pool(Mutex<PoolState>);

struct PoolState {
    /// The callers waiting for each lookup asked for and not answered yet (queued or
    /// running), oldest first.
    waiting: BTreeMap<(String, u16), VecDeque<Deliver>>,
    /// Lookups no thread has taken yet, in the order they were asked for.
    queue: VecDeque<(String, u16)>,
    /// Lookup threads alive.
    threads: usize,
}

/// The system resolver's pool, shared by the whole process.
static SYSTEM_POOL: Pool = Pool::new();

impl Pool {
    const fn new() -> Self {
        Pool(Mutex::new(PoolState {
            waiting: BTreeMap::new(),
            queue: VecDeque::new(),
            threads: 0,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Only the pool's bookkeeping runs under the lock, never a lookup or a delivery.
        crate::sync::lock(&self.0)
    }
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
            custom: Some(Arc::new(Custom {
                lookup: Box::new(lookup),
                pool: Pool::new(),
            })),
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
            Some(custom) => (custom.lookup)(host, port)?,
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

    /// Resolves `host:port` on a lookup thread (named [`RESOLVE_THREAD_NAME`]) and hands the
    /// answer to `deliver` there. If a lookup of `host:port` is already in flight, no new
    /// one starts: `deliver` gets that lookup's answer. A resolver function that panics
    /// delivers an error. An error here means no lookup thread could be started (`deliver`
    /// is then dropped uncalled); `deliver` is also dropped uncalled if more than
    /// [`MAX_WAITERS_PER_LOOKUP`] later callers pile up on the same lookup.
    ///
    /// Callers answer IP literals themselves ([`literal`](Resolver::literal)) rather than
    /// queue a lookup for them.
    pub fn spawn_lookup(
        &self,
        host: &str,
        port: u16,
        deliver: impl FnOnce(io::Result<Vec<SocketAddr>>) + Send + 'static,
    ) -> io::Result<()> {
        let key = (host.to_owned(), port);
        let pool = self.pool();
        let mut state = pool.lock();
        if let Some(waiters) = state.waiting.get_mut(&key) {
            waiters.push_back(Box::new(deliver));
            let excess = waiters.len().saturating_sub(MAX_WAITERS_PER_LOOKUP);
            let let_go: Vec<Deliver> = waiters.drain(..excess).collect();
            drop(state);
            drop(let_go);
            return Ok(());
        }
        state
            .waiting
            .insert(key.clone(), VecDeque::from([Box::new(deliver) as Deliver]));
        state.queue.push_back(key.clone());
        if state.threads >= MAX_LOOKUP_THREADS {
            return Ok(()); // A busy thread takes it next.
        }
        let resolver = self.clone();
        let started = std::thread::Builder::new()
            .name(RESOLVE_THREAD_NAME.into())
            .spawn(move || resolver.work());
        match started {
            Ok(_) => {
                state.threads += 1;
                Ok(())
            }
            Err(e) if state.threads == 0 => {
                // Nobody would ever take it: take it back.
                state.queue.retain(|queued| *queued != key);
                let dropped = state.waiting.remove(&key);
                drop(state);
                drop(dropped);
                Err(e)
            }
            Err(_) => Ok(()), // A running thread takes it next.
        }
    }

    fn pool(&self) -> &Pool {
        match &self.custom {
            Some(custom) => &custom.pool,
            None => &SYSTEM_POOL,
        }
    }

    /// A lookup thread: takes queued lookups until none is left, answering every caller of
    /// each.
    fn work(&self) {
        let pool = self.pool();
        loop {
            let key = {
                let mut state = pool.lock();
                match state.queue.pop_front() {
                    Some(key) => key,
                    None => {
                        state.threads -= 1;
                        return;
                    }
                }
            };
            // A panicking resolver function is an answer too: the callers must not wait for
            // one that never comes.
            let answer = panic::catch_unwind(AssertUnwindSafe(|| self.resolve(&key.0, key.1)))
                .unwrap_or_else(|_| Err(io::Error::other("the resolver panicked")));
            let waiters = pool.lock().waiting.remove(&key).unwrap_or_default();
            for deliver in waiters {
                let answer = match &answer {
                    Ok(addrs) => Ok(addrs.clone()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                };
                // A caller's panic must not cost the others their answer, nor the pool its
                // thread count.
                let _ = panic::catch_unwind(AssertUnwindSafe(|| deliver(answer)));
            }
        }
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

    /// A resolver whose lookups block until `release` is dropped, counting the calls made
    /// and the most running at once.
    struct Hanging {
        resolver: Resolver,
        calls: Arc<Mutex<Vec<String>>>,
        running: Arc<(Mutex<(usize, usize)>, std::sync::Condvar)>,
        release: Option<mpsc::Sender<()>>,
    }

    impl Hanging {
        fn new() -> Self {
            let (release, wait) = mpsc::channel::<()>();
            let wait = Arc::new(Mutex::new(wait));
            let calls: Arc<Mutex<Vec<String>>> = Arc::default();
            let running: Arc<(Mutex<(usize, usize)>, std::sync::Condvar)> = Arc::default();
            let (seen, busy) = (calls.clone(), running.clone());
            let resolver = Resolver::new(move |host, port| {
                seen.lock().unwrap().push(host.to_owned());
                {
                    let mut now = busy.0.lock().unwrap();
                    now.0 += 1;
                    now.1 = now.1.max(now.0);
                    busy.1.notify_all();
                }
                // Nothing is ever sent: this returns once the sender is dropped. Lookups
                // take turns on the receiver, each returning as soon as it is released.
                let _ = wait.lock().unwrap().recv();
                busy.0.lock().unwrap().0 -= 1;
                Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
            });
            Hanging {
                resolver,
                calls,
                running,
                release: Some(release),
            }
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }

        /// Waits (bounded) until `n` lookups run at once.
        fn wait_running(&self, n: usize) {
            let (lock, changed) = &*self.running;
            let guard = lock.lock().unwrap();
            let (guard, _) = changed
                .wait_timeout_while(guard, Duration::from_secs(10), |r| r.0 < n)
                .unwrap();
            assert_eq!(guard.0, n, "lookups running");
        }

        fn most_at_once(&self) -> usize {
            self.running.0.lock().unwrap().1
        }
    }

    #[test]
    fn callers_of_a_name_share_one_lookup_and_each_gets_its_answer() {
        let mut hanging = Hanging::new();
        let (tx, rx) = mpsc::channel();
        for caller in 0..100u16 {
            let tx = tx.clone();
            hanging
                .resolver
                .clone()
                .spawn_lookup("one.test", 80, move |result| {
                    let _ = tx.send((caller, result.map_err(|e| e.kind())));
                })
                .unwrap();
        }
        hanging.wait_running(1);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(hanging.calls(), ["one.test"], "one lookup for 100 callers");
        hanging.release = None;
        let mut answered: Vec<u16> = (0..100)
            .map(|_| {
                let (caller, result) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
                assert_eq!(result, Ok(vec![SocketAddr::from(([127, 0, 0, 1], 80))]));
                caller
            })
            .collect();
        answered.sort_unstable();
        assert_eq!(answered, (0..100).collect::<Vec<u16>>());
        // Once answered, the next caller starts a fresh lookup.
        let (tx, rx) = mpsc::channel();
        hanging
            .resolver
            .spawn_lookup("one.test", 80, move |result| {
                let _ = tx.send(result.is_ok());
            })
            .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true));
        assert_eq!(hanging.calls(), ["one.test", "one.test"]);
    }

    #[test]
    fn hung_lookups_hold_no_more_than_the_pool_and_the_rest_wait_their_turn() {
        let mut hanging = Hanging::new();
        let (tx, rx) = mpsc::channel();
        let names: Vec<String> = (0..10).map(|i| format!("name{i}.test")).collect();
        for round in 0..5 {
            for name in &names {
                let tx = tx.clone();
                let name2 = name.clone();
                hanging
                    .resolver
                    .spawn_lookup(name, 443, move |result| {
                        let _ = tx.send((name2, round, result.is_ok()));
                    })
                    .unwrap();
            }
        }
        hanging.wait_running(MAX_LOOKUP_THREADS);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(hanging.calls().len(), MAX_LOOKUP_THREADS, "the others wait");
        assert_eq!(hanging.most_at_once(), MAX_LOOKUP_THREADS);
        hanging.release = None;
        // Every caller of every name is answered, one lookup per name.
        let answers: Vec<(String, i32, bool)> = (0..50)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert!(answers.iter().all(|a| a.2));
        let mut calls = hanging.calls();
        calls.sort();
        assert_eq!(calls, names);
        assert!(hanging.most_at_once() <= MAX_LOOKUP_THREADS);
    }

    #[test]
    fn callers_past_the_limit_let_the_longest_waiting_go() {
        let mut hanging = Hanging::new();
        let answered = Arc::new(Mutex::new(Vec::new()));
        let let_go = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        /// Counts itself in `let_go` when dropped without being called.
        struct Ticket(Option<Arc<std::sync::atomic::AtomicUsize>>);
        impl Ticket {
            fn answered(mut self) {
                self.0 = None;
            }
        }
        impl Drop for Ticket {
            fn drop(&mut self) {
                if let Some(count) = self.0.take() {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
        for caller in 0..MAX_WAITERS_PER_LOOKUP + 10 {
            let ticket = Ticket(Some(let_go.clone()));
            let answered = answered.clone();
            hanging
                .resolver
                .spawn_lookup("busy.test", 1, move |_| {
                    ticket.answered();
                    answered.lock().unwrap().push(caller);
                })
                .unwrap();
        }
        assert_eq!(let_go.load(std::sync::atomic::Ordering::SeqCst), 10);
        hanging.wait_running(1);
        hanging.release = None;
        let began = std::time::Instant::now();
        while answered.lock().unwrap().len() < MAX_WAITERS_PER_LOOKUP {
            assert!(
                began.elapsed() < Duration::from_secs(10),
                "not all answered"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut answered = answered.lock().unwrap().clone();
        answered.sort_unstable();
        assert_eq!(
            answered,
            (10..MAX_WAITERS_PER_LOOKUP + 10).collect::<Vec<_>>(),
            "the ten oldest were let go"
        );
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
