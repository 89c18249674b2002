//! A NATS server with JetStream for a test: Debian's `nats-server` (which
//! `scripts/setup` installs), on a loopback port and a storage folder of
//! the test's own, stopped when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Connection, Layout, Settings};

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
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
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let mut server = NatsServer { child: None, port, dir: tempfile::tempdir().expect("a temporary folder") };
        server.run();
        server
    }

    fn run(&mut self) {
        let child = Command::new(binary())
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on 127.0.0.1:{} within 10 s", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// The store's settings for the server at `url`.
pub fn settings(url: &str) -> Settings {
    Settings {
        url: url.to_string(),
        replicas: 1,
        retention: Duration::from_secs(7 * 86400),
        dedupe_window: Duration::from_secs(86400),
        connect_timeout: Duration::from_secs(5),
    }
}

/// A connection to `server` and the store's layout on it.
pub fn connected(server: &NatsServer) -> (Arc<Connection>, Layout) {
    let conn = Arc::new(Connection::open(&settings(&server.url())).unwrap());
    let layout = Layout::ensure(&conn, &settings(&server.url())).unwrap();
    (conn, layout)
}
