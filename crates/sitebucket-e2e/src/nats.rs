//! A real `nats-server` for tests (Debian's package, 2.9; `.ci/run` installs it when missing):
//! started on 127.0.0.1 with JetStream and a temporary store on a free port, killed and its
//! store removed on drop. One helper for every crate whose tests need NATS.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `nats-server -js` of the test's own.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    store: PathBuf,
    port: u16,
    args: Vec<String>,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl NatsServer {
    /// Starts a single server and waits (at most 10 s) until it listens.
    pub fn start() -> Self {
        Self::start_with(free_port(), Vec::new())
    }

    /// Starts a server on `port` with `extra` arguments (cluster routes, a server name).
    pub fn start_with(port: u16, extra: Vec<String>) -> Self {
        let store =
            std::env::temp_dir().join(format!("sitebucket-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&store).expect("a temporary store directory");
        let mut server = NatsServer {
            child: None,
            store,
            port,
            args: extra,
            url: format!("nats://127.0.0.1:{port}"),
        };
        server.restart();
        server
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id, while it runs (to read its CPU time from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the server again (after [`kill`](Self::kill)) on the same port and store, and
    /// waits until it listens.
    pub fn restart(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.store)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (apt-get install -y nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {} in 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (SIGKILL), keeping its store for [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
