//! A real `nats-server` for tests (Debian's package, 2.9; `.ci/run` installs it when missing):
//! started on 127.0.0.1 with JetStream and a temporary store on a free port, killed and its
//! store removed on drop. One helper for every crate whose tests need NATS.
//!
//! [`NatsCluster`] starts three such servers as one JetStream cluster (routes on loopback), for
//! tests where one node of the engine fails.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to listen once started.
const LISTEN_BOUND: Duration = Duration::from_secs(10);

/// How long a cluster may take to elect its JetStream meta leader once every node listens.
const META_LEADER_BOUND: Duration = Duration::from_secs(30);

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

/// `n` distinct user ids below 2^50 from `seed` (SplitMix64): the follow sets of the fleet's
/// black-box tests and of `bench-fleet`.
pub fn users(seed: u64, n: usize) -> std::collections::BTreeSet<u64> {
    let mut state = seed;
    let mut users = std::collections::BTreeSet::new();
    while users.len() < n {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        users.insert(((z ^ (z >> 31)) >> 14).max(1));
    }
    users
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct free loopback ports: all bound at once (so no two are the same), then
/// released. Another process may still take one before the caller binds it: callers that
/// start servers on them retry with fresh ports when a server cannot listen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("a bound address").port())
        .collect()
}

impl NatsServer {
    /// Starts a single server and waits (at most 10 s) until it listens.
    pub fn start() -> Self {
        Self::start_with(free_port(), Vec::new())
    }

    /// Starts a server on `port` with `extra` arguments (cluster routes, a server name).
    pub fn start_with(port: u16, extra: Vec<String>) -> Self {
        Self::try_start_with(port, extra).unwrap_or_else(|why| panic!("{why}"))
    }

    /// As [`start_with`](Self::start_with), but a server that exits at once (its port taken)
    /// or does not listen within 10 s is an error saying so, not a panic.
    pub fn try_start_with(port: u16, extra: Vec<String>) -> Result<Self, String> {
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
        server.try_restart()?;
        Ok(server)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server process's id, while it runs (to read its CPU time from `/proc`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the server process is running (not killed, not exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts the server again on the same port and store, and waits until it listens: a
    /// server still running is killed first (SIGKILL, as [`kill`](Self::kill)), so the one
    /// that answers afterwards is always the new process.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|why| panic!("{why}"));
    }

    /// As [`restart`](Self::restart), returning what went wrong instead of panicking (the
    /// server exited, e.g. because its port was taken, or did not listen within 10 s; its
    /// log's tail is in the message).
    pub fn try_restart(&mut self) -> Result<(), String> {
        // Without this, a running server would keep the port, the new process would exit,
        // and the old one would answer the wait below and outlive the test.
        self.kill();
        let log = self.store.join("server.log");
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
            .arg("-l")
            .arg(&log)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (apt-get install -y nats-server)");
        self.child = Some(child);
        let deadline = Instant::now() + LISTEN_BOUND;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let tail = || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(5)..].join("\n")
            };
            if !self.is_running() {
                self.kill();
                return Err(format!(
                    "nats-server on port {} exited at start:\n{}",
                    self.port,
                    tail()
                ));
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!(
                    "nats-server did not listen on {} in {LISTEN_BOUND:?}:\n{}",
                    self.port,
                    tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
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

/// One node of a [`NatsCluster`].
#[derive(Debug)]
pub struct NatsNode {
    /// The server (its client URL is `server.url`).
    pub server: NatsServer,
    /// Its `server_name` (`n0`, `n1`, `n2`): the name JetStream reports leaders by.
    pub name: String,
    /// Its HTTP monitoring port (`/jsz`, `/connz`, …).
    pub monitor_port: u16,
}

impl NatsNode {
    /// GETs `path` (e.g. `/connz`) from the node's monitoring port and parses the JSON
    /// answer; `None` if the node does not answer within 2 s or the answer is not JSON.
    pub fn monitor(&self, path: &str) -> Option<serde_json::Value> {
        let timeout = Duration::from_secs(2);
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.monitor_port));
        let mut socket = TcpStream::connect_timeout(&addr, timeout).ok()?;
        socket.set_read_timeout(Some(timeout)).ok()?;
        socket
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .ok()?;
        let mut answer = Vec::new();
        socket.read_to_end(&mut answer).ok()?;
        let body = answer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        serde_json::from_slice(&answer[body..]).ok()
    }

    /// The JetStream meta leader this node knows of, if any.
    pub fn meta_leader(&self) -> Option<String> {
        let jsz = self.monitor("/jsz")?;
        let leader = jsz["meta_cluster"]["leader"].as_str()?;
        (!leader.is_empty()).then(|| leader.to_owned())
    }
}

/// Three `nats-server -js` nodes forming one JetStream cluster on 127.0.0.1: each with its own
/// temporary store, `server_name` `n0`..`n2`, the cluster name `sitebucket-test`, a cluster
/// port and routes to the other two, and an HTTP monitoring port. Every node is killed (and
/// its store removed) on drop.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, in order `n0`, `n1`, `n2`.
    pub nodes: Vec<NatsNode>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until every node agrees on a JetStream meta leader
    /// (at most 30 s once they listen; a panic says which node knows what). Ports are chosen
    /// free; if another process takes one before a node binds it, the whole cluster is
    /// started again on fresh ports (at most 5 attempts).
    pub fn start() -> Self {
        let mut failures = Vec::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(cluster) => {
                    cluster.wait_for_meta_leader();
                    return cluster;
                }
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "cannot start a three-node NATS cluster:\n{}",
            failures.join("\n")
        );
    }

    fn try_start() -> Result<Self, String> {
        const N: usize = 3;
        let ports = free_ports(3 * N);
        let (clients, rest) = ports.split_at(N);
        let (routes, monitors) = rest.split_at(N);
        let mut nodes = Vec::new();
        for i in 0..N {
            let name = format!("n{i}");
            let others: Vec<String> = (0..N)
                .filter(|j| *j != i)
                .map(|j| format!("nats://127.0.0.1:{}", routes[j]))
                .collect();
            let args = vec![
                "--server_name".to_owned(),
                name.clone(),
                "--cluster_name".to_owned(),
                "sitebucket-test".to_owned(),
                "--cluster".to_owned(),
                format!("nats://127.0.0.1:{}", routes[i]),
                "--routes".to_owned(),
                others.join(","),
                "-m".to_owned(),
                monitors[i].to_string(),
            ];
            // On an error the nodes started so far are dropped (killed) with `nodes`.
            let server = NatsServer::try_start_with(clients[i], args)?;
            nodes.push(NatsNode {
                server,
                name,
                monitor_port: monitors[i],
            });
        }
        Ok(NatsCluster { nodes })
    }

    fn wait_for_meta_leader(&self) {
        let started = Instant::now();
        loop {
            let leaders: Vec<Option<String>> =
                self.nodes.iter().map(NatsNode::meta_leader).collect();
            if leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
                return;
            }
            assert!(
                started.elapsed() < META_LEADER_BOUND,
                "the NATS cluster elected no JetStream meta leader in {META_LEADER_BOUND:?}: \
                 nodes n0..n2 know of {leaders:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every node's client URL, comma-separated (as `--nats` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.server.url.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the node named `name` (`n1` → 1).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Kills node `index` with SIGKILL (its store is kept).
    pub fn kill(&mut self, index: usize) {
        self.nodes[index].server.kill();
    }

    /// The JetStream meta leader as the running nodes see it, if they agree on one.
    pub fn meta_leader(&mut self) -> Option<String> {
        let mut seen = None;
        for node in &mut self.nodes {
            if !node.server.is_running() {
                continue;
            }
            let leader = node.meta_leader()?;
            if seen.get_or_insert_with(|| leader.clone()) != &leader {
                return None;
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether process `pid` still exists (a reaped child does not).
    fn alive(pid: u32) -> bool {
        std::path::Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn a_restart_of_a_running_server_replaces_the_process_and_a_drop_leaves_none() {
        let mut server = NatsServer::start();
        let first = server.pid().expect("running");
        server.restart();
        let second = server.pid().expect("running again");
        assert!(
            !alive(first),
            "the first nats-server ({first}) outlived the restart"
        );
        assert!(server.is_running(), "the new nats-server exited");
        assert!(TcpStream::connect(("127.0.0.1", server.port())).is_ok());
        drop(server);
        assert!(!alive(second), "nats-server ({second}) outlived its handle");
    }
}
