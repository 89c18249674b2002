//! `nats-server` with JetStream for tests — one, or a cluster of three:
//! Debian's `nats-server` (which `scripts/setup` installs), on loopback
//! ports and storage folders of the test's own, stopped when dropped.
//! Standard library and `tempfile` only: the host's unit tests and the
//! end-to-end tests (which include this file) share it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    /// In a cluster: its name, its cluster port, the other nodes' cluster ports.
    cluster: Option<(String, u16, Vec<u16>)>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn binary() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file());
    found.expect("the `nats-server` command is missing: run scripts/setup (it installs Debian's nats-server package)")
}

impl NatsServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> NatsServer {
        let mut server = NatsServer { child: None, port: free_port(), dir: tempfile::tempdir().expect("a temporary folder"), cluster: None };
        server.run();
        server
    }

    /// Starts a cluster of three (JetStream replicated across them).
    pub fn cluster() -> Vec<NatsServer> {
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes: Vec<NatsServer> = (0..3)
            .map(|i| NatsServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("a temporary folder"),
                cluster: Some((format!("node-{i}"), routes[i], routes.iter().copied().filter(|p| *p != routes[i]).collect())),
            })
            .collect();
        for node in &mut nodes {
            node.run();
        }
        nodes
    }

    fn run(&mut self) {
        let mut command = Command::new(binary());
        command.args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"]).arg(self.dir.path());
        if let Some((name, port, others)) = &self.cluster {
            let routes: Vec<String> = others.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect();
            command.args(["-n", name, "--cluster_name", "syncline-test", "--cluster", &format!("nats://127.0.0.1:{port}"), "--routes", &routes.join(",")]);
        }
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on 127.0.0.1:{} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops it (its data stays for [`NatsServer::restart`]).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

