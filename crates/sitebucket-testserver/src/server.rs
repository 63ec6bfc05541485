//! The real loopback server: [`Session`]s on sockets, one thread per connection.
//!
//! It binds `127.0.0.1` only. Each accepted connection gets the scenario's plan for its attempt
//! index, and a thread that moves bytes between the socket and the session with real time:
//! it writes what the session transmits, and reads (with a timeout up to the session's next
//! deadline) while the session waits, so input and output interleave.
//!
//! Control requests (`…/c/<id>/add_user.json` and the others) are connections like any
//! other: each is an attempt, in accept order, answered from the server's live control
//! streams rather than from its plan (see [`control`](crate::control)).

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::control::{ControlStream, ControlStreams};
use crate::oauth::Credentials;
use crate::scenario::Scenario;
use crate::session::{AttemptRecord, Output, Session};
use crate::tls;
use crate::v2::V2Service;

/// How long the acceptor sleeps when no connection is pending.
const ACCEPT_POLL: Duration = Duration::from_millis(5);
/// The longest a connection thread blocks in a read before it looks at the stop flags.
/// Shutting the socket down wakes it at once; this is only a safety net.
const MAX_READ_BLOCK: Duration = Duration::from_secs(1);
/// The longest a connection thread blocks in a write to a client that does not read.
const WRITE_BLOCK: Duration = Duration::from_millis(250);
/// Stack of each connection thread: small, so ten thousand idle connections stay cheap.
const CONNECTION_STACK: usize = 512 * 1024;
/// How long `kill_connections` and `shutdown` wait for connection threads to finish.
const THREAD_EXIT_BOUND: Duration = Duration::from_secs(3);

/// How to run a [`TestServer`]. The default is plain TCP, [`Credentials::test_default`] and
/// any free port.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Serve TLS (with a CA and leaf certificate made at start-up) instead of plain TCP.
    pub tls: bool,
    /// The OAuth credentials requests must be signed with.
    pub credentials: Credentials,
    /// The port on 127.0.0.1; `None` picks a free one.
    pub port: Option<u16>,
    /// Speak X API v2 instead of Site Streams: requests must carry this Bearer token (see
    /// [`v2`](crate::v2)), and [`TestServer::url`] is the filtered stream's.
    pub bearer_token: Option<String>,
}

impl ServerOptions {
    /// Plain TCP, the default test credentials, any free port.
    pub fn plain() -> Self {
        ServerOptions::default()
    }

    /// TLS, the default test credentials, any free port.
    pub fn tls() -> Self {
        ServerOptions {
            tls: true,
            ..ServerOptions::default()
        }
    }
}

/// One live connection, as the server's handle sees it.
struct Live {
    socket: TcpStream,
    killed: Arc<AtomicBool>,
}

#[derive(Default)]
struct State {
    attempts: Vec<AttemptRecord>,
    /// Per attempt: the request arrived in full, or the connection ended.
    settled: Vec<bool>,
    live: HashMap<usize, Live>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    scenario: Scenario,
    credentials: Credentials,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
    control: ControlStreams,
    /// Told of each attempt as it ends (see [`TestServer::set_ended_hook`]).
    ended_hook: Mutex<Option<EndedHook>>,
    v2: Option<V2Service>,
}

/// Called with each attempt's final record as it ends (see [`TestServer::set_ended_hook`]).
pub type EndedHook = Arc<dyn Fn(&AttemptRecord) + Send + Sync>;

impl Shared {
    /// The state, even if a connection thread panicked while holding the lock.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, record: &AttemptRecord, ended: bool) {
        let mut state = self.state();
        let i = record.index;
        if let Some(slot) = state.attempts.get_mut(i) {
            *slot = record.clone();
            if ended {
                slot.ended_at = Some(Instant::now());
            }
        }
        if let Some(settled) = state.settled.get_mut(i) {
            *settled |= ended || record.request_complete();
        }
        if ended {
            let hook = self
                .ended_hook
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if let (Some(hook), Some(slot)) = (hook, state.attempts.get_mut(i)) {
                // Told before the attempt leaves `live`, so whoever waits for it to end
                // (`kill_connections`) also waits for the hook. Then only what the
                // record's own fields need to stay light is kept.
                hook(slot);
                slot.query = Vec::new();
                slot.form = Vec::new();
                slot.headers = Vec::new();
                slot.oauth_params = Vec::new();
            }
            state.live.remove(&i);
        }
        drop(state);
        self.changed.notify_all();
    }
}

/// A scripted Site Streams server on 127.0.0.1. See the [crate docs](crate).
///
/// Dropping it shuts it down: every connection is closed and every thread joined, within a
/// bounded time.
pub struct TestServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<()>>,
    ca_pem: Option<String>,
    ca_der: Option<Vec<u8>>,
    ca_path: Option<PathBuf>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("url", &self.url())
            .field("credentials", &self.shared.credentials)
            .field("ca_path", &self.ca_path)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Binds 127.0.0.1 (on `options.port`, or a free port) and starts accepting connections,
    /// each answered by `scenario`'s plan for its attempt index.
    ///
    /// With `options.tls`, makes a CA and a leaf certificate for `localhost` and `127.0.0.1`
    /// and writes the CA to a temporary file ([`TestServer::ca_path`]), removed on shutdown.
    pub fn start(scenario: Scenario, options: ServerOptions) -> io::Result<TestServer> {
        let listener = TcpListener::bind(SocketAddrV4::new(
            Ipv4Addr::LOCALHOST,
            options.port.unwrap_or(0),
        ))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (tls_config, ca_pem, ca_der, ca_path) = if options.tls {
            let material = tls::generate()?;
            let path = std::env::temp_dir().join(format!(
                "sitebucket-testserver-{}-{}-ca.pem",
                std::process::id(),
                addr.port()
            ));
            std::fs::write(&path, &material.ca_pem)?;
            (
                Some(material.config),
                Some(material.ca_pem),
                Some(material.ca_der),
                Some(path),
            )
        } else {
            (None, None, None, None)
        };
        let shared = Arc::new(Shared {
            scenario,
            credentials: options.credentials,
            tls: tls_config,
            stop: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            control: ControlStreams::new(),
            ended_hook: Mutex::new(None),
            v2: options.bearer_token.map(V2Service::new),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("testserver-accept-{}", addr.port()))
            .spawn(move || accept_loop(acceptor_shared, listener))?;
        Ok(TestServer {
            shared,
            addr,
            acceptor: Some(acceptor),
            ca_pem,
            ca_der,
            ca_path,
        })
    }

    /// The stream URL: `http://127.0.0.1:PORT/1.1/site.json` (`https://` with TLS), or
    /// the v2 filtered stream's (`…/2/tweets/search/stream`) on a v2 server.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        let path = if self.shared.v2.is_some() {
            crate::v2::FILTERED_PATH
        } else {
            "/1.1/site.json"
        };
        format!("{scheme}://127.0.0.1:{}{path}", self.addr.port())
    }

    /// The v2 sample stream's URL (`…/2/tweets/sample/stream`).
    pub fn sample_url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!(
            "{scheme}://127.0.0.1:{}{}",
            self.addr.port(),
            crate::v2::SAMPLE_PATH
        )
    }

    /// The v2 side (its token and rules) of a v2 server.
    pub fn v2(&self) -> Option<&V2Service> {
        self.shared.v2.as_ref()
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Whether the server speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.shared.tls.is_some()
    }

    /// The CA certificate (PEM) that signed the server's certificate, with TLS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    /// The CA certificate (DER), with TLS: ready for a rustls `RootCertStore`.
    pub fn ca_der(&self) -> Option<Vec<u8>> {
        self.ca_der.clone()
    }

    /// A temporary file holding [`TestServer::ca_pem`] (for `--ca-file`), with TLS.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// The credentials requests must be signed with.
    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    /// Calls `hook` with each attempt's final record as the attempt ends, for servers that
    /// run for hours and log attempts as they go. From then on an ended attempt's record in
    /// [`attempts`](Self::attempts) is kept light: its query, form, headers and OAuth
    /// parameters are dropped once the hook has seen them (times, status and counters stay).
    /// The hook runs on the connection's thread with the server's state locked: it must be
    /// quick and must not call back into the server.
    pub fn set_ended_hook(&self, hook: impl Fn(&AttemptRecord) + Send + Sync + 'static) {
        *self
            .shared
            .ended_hook
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(hook));
    }

    /// Every attempt so far, in accept order, as the server saw it up to now.
    pub fn attempts(&self) -> Vec<AttemptRecord> {
        self.shared.state().attempts.clone()
    }

    /// The live control streams: each connection whose plan announced one
    /// ([`Step::Control`](crate::Step::Control)) and has not ended, with whom it follows now.
    pub fn control_streams(&self) -> Vec<ControlStream> {
        self.shared.control.streams()
    }

    /// The live control stream `id`, if any.
    pub fn control_stream(&self, id: &str) -> Option<ControlStream> {
        self.shared.control.get(id)
    }

    /// How many connections are open now.
    pub fn open_connections(&self) -> usize {
        self.shared.state().live.len()
    }

    /// Waits until at least `n` attempts have settled — their whole request arrived, or their
    /// connection ended — or `timeout` passed. Returns whether they had.
    pub fn wait_for_attempts(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |state| {
            state.settled.iter().filter(|s| **s).count() >= n
        })
    }

    /// Waits until exactly `n` connections are open, or `timeout` passed. Returns whether they
    /// were.
    pub fn wait_for_open_connections(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |state| state.live.len() == n)
    }

    fn wait_until(&self, timeout: Duration, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state();
        loop {
            if done(&state) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = match self.shared.changed.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    /// Drops every live connection now (the client sees the connection close), and waits
    /// (boundedly) until their threads are gone. Returns how many were killed. The server
    /// keeps accepting new connections.
    pub fn kill_connections(&self) -> usize {
        let killed: Vec<usize> = {
            let state = self.shared.state();
            for live in state.live.values() {
                live.killed.store(true, Ordering::SeqCst);
                let _ = live.socket.shutdown(Shutdown::Both);
            }
            state.live.keys().copied().collect()
        };
        self.wait_until(THREAD_EXIT_BOUND, |state| {
            killed.iter().all(|i| !state.live.contains_key(i))
        });
        killed.len()
    }

    /// Stops accepting, closes every connection, joins every thread and removes the CA file.
    /// Returns within a bounded time; calling it again does nothing.
    pub fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = {
            let mut state = self.shared.state();
            for live in state.live.values() {
                live.killed.store(true, Ordering::SeqCst);
                let _ = live.socket.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut state.threads)
        };
        let deadline = Instant::now() + THREAD_EXIT_BOUND;
        for handle in threads {
            // A thread that somehow outlives the bound is left detached rather than hanging
            // the caller; each one wakes within MAX_READ_BLOCK or WRITE_BLOCK of the stop flag.
            while !handle.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
        if let Some(path) = self.ca_path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut next_index = 0usize;
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _peer)) => {
                let index = next_index;
                next_index += 1;
                // On failure (no thread could be spawned, the socket could not be set up) the
                // attempt is recorded as ended with no request, and the socket is dropped.
                let _ = start_connection(&shared, stream, index);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // WouldBlock, or a transient error such as running out of file descriptors.
            Err(_) => thread::sleep(ACCEPT_POLL),
        }
    }
}

fn start_connection(shared: &Arc<Shared>, stream: TcpStream, index: usize) -> io::Result<()> {
    let accepted_at = Instant::now();
    let plan = shared.scenario.plan_for(index);
    let mut session = Session::new(plan, &shared.credentials, index, accepted_at)
        .with_tls(shared.tls.is_some())
        .with_control(shared.control.clone());
    if let Some(service) = &shared.v2 {
        session = session.with_v2(service.clone());
    }
    let killed = Arc::new(AtomicBool::new(false));
    {
        let mut state = shared.state();
        state.attempts.push(session.record().clone());
        state.settled.push(false);
        state.threads.retain(|t| !t.is_finished());
    }
    let setup = (|| {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(WRITE_BLOCK))?;
        let handle = stream.try_clone()?;
        Ok::<_, io::Error>(handle)
    })();
    let handle = match setup {
        Ok(handle) => handle,
        Err(e) => {
            shared.update(session.record(), true);
            return Err(e);
        }
    };
    shared.state().live.insert(
        index,
        Live {
            socket: handle,
            killed: Arc::clone(&killed),
        },
    );
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("testserver-conn-{index}"))
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            let record = serve(&thread_shared, session, stream, &killed);
            thread_shared.update(&record, true);
        });
    match spawned {
        Ok(thread) => {
            shared.state().threads.push(thread);
            Ok(())
        }
        Err(e) => {
            let mut state = shared.state();
            state.live.remove(&index);
            if let Some(settled) = state.settled.get_mut(index) {
                *settled = true;
            }
            drop(state);
            shared.changed.notify_all();
            Err(e)
        }
    }
}

/// The socket, plain or wrapped in TLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(s) => &s.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Runs one connection to its end; returns the session's final record.
fn serve(
    shared: &Shared,
    mut session: Session,
    stream: TcpStream,
    killed: &AtomicBool,
) -> AttemptRecord {
    let stopped = || shared.stop.load(Ordering::SeqCst) || killed.load(Ordering::SeqCst);
    let mut transport = match &shared.tls {
        None => Transport::Plain(stream),
        Some(config) => match rustls::ServerConnection::new(Arc::clone(config)) {
            Ok(conn) => Transport::Tls(Box::new(rustls::StreamOwned::new(conn, stream))),
            Err(_) => return session.record().clone(),
        },
    };
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stopped() {
            break;
        }
        let now = Instant::now();
        let block = match session.poll_output(now) {
            Output::Transmit(bytes) => {
                let messages = session.messages_out();
                if write_all(&mut transport, &bytes, &stopped).is_err() {
                    break;
                }
                session.handle_sent(now, messages);
                continue;
            }
            Output::Close => {
                close(&mut transport, session.closed_cleanly());
                break;
            }
            Output::Wait(deadline) => deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), MAX_READ_BLOCK),
            Output::Idle => MAX_READ_BLOCK,
        };
        if transport.socket().set_read_timeout(Some(block)).is_err() {
            break;
        }
        match transport.read(&mut buf) {
            Ok(0) => {
                session.handle_eof(Instant::now());
                break;
            }
            Ok(n) => {
                let was_complete = session.record().request_complete();
                session.handle_input(Instant::now(), &buf[..n]);
                if session.record().request_complete() != was_complete
                    || session.record().status.is_some()
                {
                    shared.update(session.record(), false);
                }
            }
            Err(e) if is_timeout(&e) => {}
            Err(_) => {
                session.handle_eof(Instant::now());
                break;
            }
        }
    }
    session.record().clone()
}

/// Writes all of `data`, retrying on write timeouts until the connection is stopped.
fn write_all(
    transport: &mut Transport,
    mut data: &[u8],
    stopped: &dyn Fn() -> bool,
) -> io::Result<()> {
    while !data.is_empty() {
        match transport.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if is_timeout(&e) => {
                if stopped() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    loop {
        match transport.flush() {
            Ok(()) => return Ok(()),
            Err(e) if is_timeout(&e) => {
                if stopped() {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Ends the connection: TLS `close_notify` when the response finished properly, then FIN,
/// then a quick drain of unread input so the kernel does not answer it with a reset.
fn close(transport: &mut Transport, clean: bool) {
    if clean {
        if let Transport::Tls(tls) = transport {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }
    let socket = transport.socket();
    let _ = socket.shutdown(Shutdown::Write);
    if socket.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 4096];
        let mut socket = socket;
        while let Ok(n) = socket.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests;
