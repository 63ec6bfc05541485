//! [`TokioDriver`]: the [`Driver`] that runs streams as tasks on a tokio runtime.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::oneshot;

use sitebucket_proto::control::{ControlCall, ControlError, ControlResponse};
use sitebucket_proto::Outcome;
use sitebucket_proto::{Parser, SiteStream};
use sitebucket_thread::sync::lock;
use sitebucket_thread::{Driver, Resolver, RunHandle, RunState};

use crate::task::{self, KeepAlive, StreamTask};
use crate::{drive_with, run_control_with};

/// How much longer than its own timeout [`Driver::control`] waits for a call's answer
/// before it gives up on a runtime that does not run the call.
const CONTROL_GRACE: Duration = Duration::from_secs(1);

/// The name of the thread that runs a runtime the driver owns.
const RUNTIME_THREAD_NAME: &str = "sitebucket-rt";

/// The [`Driver`] running each stream as a task on a tokio runtime: one you pass
/// ([`with_handle`](Self::with_handle)), or a current-thread runtime the driver owns on a
/// thread of its own ([`new`](Self::new)), started with the first stream.
///
/// Give it to [`ListenThread`](sitebucket_thread::ListenThread) or
/// [`Monitor`](sitebucket_thread::Monitor) like any other driver; every stream is a task,
/// so thousands of streams cost no thread each. From async code, prefer
/// [`spawn_stream`](Self::spawn_stream) (or [`spawn`](crate::spawn), [`drive`](crate::drive),
/// [`messages`](crate::messages)): `ListenThread`'s `join`, `add_users` and
/// siblings, like [`run`](Driver::run) and [`control`](Driver::control) here, block their
/// thread and are meant for threads outside the runtime. Called from inside a runtime they
/// return an error instead of blocking it.
///
/// Clones share the runtime and the resolver. An owned runtime stops once every clone is
/// dropped and every stream on it has ended (dropping the last clone while no stream runs
/// waits for its thread to end, so none is left behind); the tasks of a runtime you pass
/// live and die with that runtime.
///
/// With a runtime you pass, a current-thread runtime runs its tasks only while some thread
/// is inside its `Runtime::block_on`; a multi-thread runtime runs them on its workers.
#[derive(Clone)]
pub struct TokioDriver {
    shared: Arc<Shared>,
    resolver: Resolver,
}

/// What every clone of a driver shares.
struct Shared {
    home: Home,
    /// Streams spawned on the runtime and not yet ended.
    live: Arc<AtomicUsize>,
}

/// Where the driver's tasks run.
enum Home {
    /// The user's runtime.
    Handle(Handle),
    /// A runtime of our own, started on first use.
    Owned(Mutex<Option<Owned>>),
}

/// A current-thread runtime running on a thread of its own until `shutdown` fires.
struct Owned {
    handle: Handle,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Owned {
    fn start() -> io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(RUNTIME_THREAD_NAME.into())
            .spawn(move || {
                // An error means the sender was dropped: a shutdown too.
                runtime.block_on(async {
                    let _ = stopped.await;
                });
                // Outside `block_on`: dropping the runtime drops what tasks are left.
                drop(runtime);
            })?;
        Ok(Self {
            handle,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The last task holding the runtime may end on the runtime's own thread: it
            // cannot wait for itself, and the thread ends right after anyway.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Counts a live stream until dropped (the run ended, or its task was aborted).
struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    fn new(live: &Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self(live.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for TokioDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl TokioDriver {
    /// A driver owning a current-thread runtime, which starts on a thread named
    /// `sitebucket-rt` with the first stream or call. Host names go to the system
    /// resolver.
    pub fn new() -> Self {
        Self::with_home(Home::Owned(Mutex::new(None)), Resolver::system())
    }

    /// A driver running its streams and calls on the runtime of `handle` (e.g.
    /// `tokio::runtime::Handle::current()`), which must have I/O and time enabled
    /// (`enable_all`). Host names go to the system resolver; see
    /// [`resolving_with`](Self::resolving_with).
    pub fn with_handle(handle: Handle) -> Self {
        Self::with_home(Home::Handle(handle), Resolver::system())
    }

    /// A driver owning its runtime, as [`new`](Self::new), that looks host names up with
    /// `resolver` (your own DNS, a fixed map), for streams and control calls alike.
    pub fn with_resolver(resolver: Resolver) -> Self {
        Self::new().resolving_with(resolver)
    }

    /// The same driver (same runtime), looking host names up with `resolver`.
    pub fn resolving_with(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    fn with_home(home: Home, resolver: Resolver) -> Self {
        Self {
            shared: Arc::new(Shared {
                home,
                live: Arc::default(),
            }),
            resolver,
        }
    }

    /// The resolver the driver looks host names up with.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// How many streams run on the runtime: spawned by this driver or a clone and not yet
    /// ended (a stream whose task was aborted or dropped has ended).
    pub fn streams(&self) -> usize {
        self.shared.live.load(Ordering::SeqCst)
    }

    /// A handle to the runtime the driver's tasks run on, starting an owned runtime if it
    /// has not started yet. An error if its thread or runtime could not be created.
    pub fn handle(&self) -> io::Result<Handle> {
        match &self.shared.home {
            Home::Handle(handle) => Ok(handle.clone()),
            Home::Owned(owned) => {
                let mut owned = lock(owned);
                if let Some(running) = &*owned {
                    return Ok(running.handle.clone());
                }
                let started = Owned::start()?;
                let handle = started.handle.clone();
                *owned = Some(started);
                Ok(handle)
            }
        }
    }

    /// Spawns a task on the driver's runtime running `stream` (see [`drive`](crate::drive)),
    /// with the driver's resolver, and returns its handle, which stops the stream when
    /// dropped. An owned runtime lives at least as long as the task. Callable from anywhere,
    /// inside a runtime or not.
    pub fn spawn_stream(
        &self,
        stream: SiteStream,
        parser: impl Parser + 'static,
    ) -> io::Result<StreamTask> {
        let handle = self.handle()?;
        Ok(StreamTask::start(
            &handle,
            stream,
            Box::new(parser),
            self.resolver.clone(),
            Some(self.keep_alive()),
        ))
    }

    /// What a task holds while it runs: the shared runtime and its place in the count.
    fn keep_alive(&self) -> KeepAlive {
        Box::new((self.shared.clone(), LiveGuard::new(&self.shared.live)))
    }

    /// An error if the calling thread is inside a tokio runtime, where a blocking call
    /// would stall (or, on a current-thread runtime, deadlock) it.
    fn not_in_a_runtime(what: &str) -> Result<(), String> {
        match Handle::try_current() {
            Err(_) => Ok(()),
            Ok(current) => {
                let flavor = match current.runtime_flavor() {
                    RuntimeFlavor::CurrentThread => "current-thread",
                    _ => "multi-thread",
                };
                Err(format!(
                    "TokioDriver::{what} blocks its thread and was called inside a {flavor} \
                     tokio runtime: call it from a thread outside the runtime, or await the \
                     async form (sitebucket_tokio::{}) instead",
                    if what == "run" {
                        "drive_with"
                    } else {
                        "run_control_with"
                    }
                ))
            }
        }
    }
}

impl std::fmt::Debug for TokioDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let runtime = match &self.shared.home {
            Home::Handle(_) => "given",
            Home::Owned(_) => "owned",
        };
        f.debug_struct("TokioDriver")
            .field("runtime", &runtime)
            .field("streams", &self.streams())
            .field("resolver", &self.resolver)
            .finish()
    }
}

impl Driver for TokioDriver {
    fn name(&self) -> &'static str {
        "tokio"
    }

    /// Runs the stream in the calling thread until it finishes or a stop is requested.
    ///
    /// A driver that owns its runtime ([`new`](TokioDriver::new)) runs it on a fresh
    /// current-thread runtime in the calling thread, for the length of the run (no other
    /// thread is woken per read); one given a handle ([`with_handle`](TokioDriver::with_handle))
    /// runs it with `Handle::block_on` on that runtime, whose sockets and timers must then
    /// be driven: by its workers (multi-thread), or by a thread inside its
    /// `Runtime::block_on` (current-thread). Called inside a tokio runtime, it returns
    /// [`Outcome::InvalidConfig`] at once rather than block that runtime: await
    /// [`drive_with`] there instead.
    fn run(
        &self,
        stream: &mut SiteStream,
        parser: &mut dyn Parser,
        control: &Arc<RunState>,
    ) -> Outcome {
        if let Err(why) = Self::not_in_a_runtime("run") {
            return Outcome::InvalidConfig(why);
        }
        let run = drive_with(stream, parser, control, &self.resolver);
        match &self.shared.home {
            Home::Handle(handle) => handle.block_on(run),
            Home::Owned(_) => match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime.block_on(run),
                Err(e) => Outcome::driver_io("starting a tokio runtime", e),
            },
        }
    }

    /// Spawns the run as a task on the driver's runtime and returns at once. The task ends
    /// with the run (the [`RunHandle`] is then answered); if the runtime shuts down first,
    /// the run is dropped and its handle's `join` returns `None`.
    fn spawn(
        &self,
        stream: SiteStream,
        parser: Box<dyn Parser>,
        control: Arc<RunState>,
    ) -> io::Result<RunHandle> {
        let handle = self.handle()?;
        let (done, finished) = mpsc::channel();
        let resolver = self.resolver.clone();
        let keep = self.keep_alive();
        handle.spawn(async move {
            let ended = task::run(stream, parser, control, resolver, Some(keep)).await;
            // A dropped handle no longer waits for the answer.
            let _ = done.send(ended);
        });
        Ok(RunHandle::new(finished, None))
    }

    /// Runs the call ([`run_control_with`], with the driver's resolver) as a task on the
    /// driver's runtime, on a socket of its own, and blocks the calling thread until it
    /// finishes (its deadline bounds that; a runtime that has not run the call a second
    /// after its timeout, such as a current-thread runtime nobody drives, gets the call
    /// aborted and [`ControlError::Timeout`] comes back). Called inside a tokio runtime, it returns
    /// [`ControlError::InvalidConfig`] at once rather than block that runtime: await
    /// [`run_control_with`] there instead.
    fn control(&self, call: ControlCall) -> Result<ControlResponse, ControlError> {
        Self::not_in_a_runtime("control").map_err(ControlError::InvalidConfig)?;
        let handle = self
            .handle()
            .map_err(|e| ControlError::InvalidConfig(format!("cannot start the runtime: {e}")))?;
        let (done, answered) = mpsc::channel();
        let resolver = self.resolver.clone();
        let keep = self.shared.clone();
        let timeout = call.timeout();
        let task = handle.spawn(async move {
            let _ = done.send(run_control_with(call, &resolver).await);
            drop(keep);
        });
        match answered.recv_timeout(timeout + CONTROL_GRACE) {
            Ok(answer) => answer,
            // The call bounds itself once it runs: a runtime that did not run it in time (a
            // current-thread runtime nobody drives) never will; make sure of that.
            Err(mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(ControlError::Timeout(timeout))
            }
            // The runtime shut down and dropped the call.
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(ControlError::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn the_driver_keeps_its_resolver() {
        assert!(TokioDriver::new().resolver().is_system());
        assert!(TokioDriver::default().resolver().is_system());
        let fixed = Resolver::fixed([("stream.test", IpAddr::from([127, 0, 0, 9]))]);
        let driver = TokioDriver::with_resolver(fixed);
        assert!(!driver.resolver().is_system());
        assert_eq!(
            driver.clone().resolver().resolve("stream.test", 7).unwrap(),
            vec![std::net::SocketAddr::from(([127, 0, 0, 9], 7))],
            "a clone shares the resolver"
        );
        assert_eq!(driver.name(), "tokio");
        assert_eq!(driver.streams(), 0);
    }

    #[test]
    fn a_control_call_on_a_runtime_nobody_drives_times_out_and_never_runs() {
        use std::net::TcpListener;
        use std::time::Instant;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let driver = TokioDriver::with_handle(runtime.handle().clone());
        let config = sitebucket_proto::Config::builder(
            [1],
            sitebucket_proto::Credentials::new("ck", "cs", "t", "ts"),
        )
        .url(format!(
            "http://{}/1.1/site.json",
            listener.local_addr().unwrap()
        ))
        .build()
        .unwrap();
        let timeout = Duration::from_millis(100);
        let call = ControlCall::for_stream(
            &config,
            Some("sb_0"),
            sitebucket_proto::control::ControlRequest::info(),
        )
        .with_timeout(timeout);
        let started = Instant::now();
        assert_eq!(
            driver.control(call).map(drop),
            Err(ControlError::Timeout(timeout))
        );
        let took = started.elapsed();
        assert!(took < timeout + CONTROL_GRACE * 5, "{took:?}");
        // Driving the runtime now runs nothing: the call was aborted.
        runtime.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
        assert_eq!(runtime.metrics().num_alive_tasks(), 0);
        assert!(listener.accept().is_err(), "the aborted call connected");
    }

    #[test]
    fn blocking_calls_inside_a_runtime_are_refused_not_blocked() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let driver = TokioDriver::with_handle(runtime.handle().clone());
        let config = sitebucket_proto::Config::builder(
            [1],
            sitebucket_proto::Credentials::new("ck", "cs", "t", "ts"),
        )
        .url("http://127.0.0.1:1/1.1/site.json")
        .build()
        .unwrap();
        let call = ControlCall::for_stream(
            &config,
            Some("sb_0"),
            sitebucket_proto::control::ControlRequest::info(),
        );
        let (outcome, answer) = runtime.block_on(async {
            let mut stream = SiteStream::new(config.clone());
            let mut parser = |_: bytes::Bytes| {};
            let outcome = driver.run(&mut stream, &mut parser, &RunState::new());
            (outcome, driver.control(call))
        });
        match outcome {
            Outcome::InvalidConfig(why) => assert!(why.contains("drive_with"), "{why}"),
            other => panic!("{other:?}"),
        }
        match answer {
            Err(ControlError::InvalidConfig(why)) => {
                assert!(why.contains("current-thread"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }
}
