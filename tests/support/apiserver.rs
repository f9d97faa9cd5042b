//! A second kube-apiserver of the test's own, on the shared environment's
//! etcd, that a test stops and starts again while berth talks to it (the
//! shared one is never touched: other tests use it).
//!
//! It runs with the shared server's own command line (read from
//! `/proc/PID/cmdline` of `.berth/local/pids/kube-apiserver.pid`: the same
//! binary, certificates and flags as `cluster-setup/local/up` gave it), only
//! on a free port of 127.0.0.1, and comes with a copy of the kubeconfig
//! pointing at it (same context name, `berth-local`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use super::{local_env, repo_root, unique_name};

/// How long a start may take before the test fails.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// A second API server; killed when dropped.
pub struct ApiServer {
    command: Vec<String>,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl ApiServer {
    /// Start a second API server on a free port and wait until it is ready.
    pub fn start() -> ApiServer {
        let shared =
            std::fs::read_to_string(repo_root().join(".berth/local/pids/kube-apiserver.pid"))
                .expect("the shared kube-apiserver's PID file");
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", shared.trim()))
            .expect("the shared kube-apiserver's command line");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let command: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| {
                let a = String::from_utf8_lossy(a).into_owned();
                if a.starts_with("--secure-port=") {
                    format!("--secure-port={port}")
                } else {
                    a
                }
            })
            .collect();
        let dir = repo_root()
            .join("target/tmp/apiservers")
            .join(unique_name("apiserver"));
        std::fs::create_dir_all(&dir).unwrap();
        kubeconfig_at(&dir, &format!("127.0.0.1:{port}"));
        let mut server = ApiServer {
            command,
            port,
            dir,
            child: None,
        };
        server.start_again();
        server
    }

    /// The kubeconfig pointing at this server (context `berth-local`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The running server's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start it (again, on the same port) and wait until `/readyz` answers.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the API server already runs");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("apiserver.log"))
            .unwrap();
        let child = Command::new(&self.command[0])
            .args(&self.command[1..])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the second kube-apiserver");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Stop it: SIGTERM (a graceful shutdown, as a rolling control-plane
    /// upgrade does) or SIGKILL (a crash), then wait until it exited.
    pub fn stop(&mut self, crash: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let signal = if crash { Signal::KILL } else { Signal::TERM };
        let pid = Pid::from_raw(child.id() as i32).expect("a PID");
        let _ = rustix::process::kill_process(pid, signal);
        let _ = child.wait();
    }

    /// Poll `/readyz` with the admin certificate until it answers 200.
    fn wait_ready(&mut self) {
        let pki = repo_root().join(".berth/local/pki");
        let started = Instant::now();
        loop {
            let ok = Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "--max-time", "2", "--cacert"])
                .arg(pki.join("ca.crt"))
                .arg("--cert")
                .arg(pki.join("admin.crt"))
                .arg("--key")
                .arg(pki.join("admin.key"))
                .arg(format!("https://{}/readyz", self.address()))
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "the second kube-apiserver exited ({status}); see {}",
                    self.log().display()
                );
            }
            assert!(
                started.elapsed() < READY_WITHIN,
                "the second kube-apiserver was not ready within {READY_WITHIN:?}; see {}",
                self.log().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Its log file.
    pub fn log(&self) -> PathBuf {
        self.dir.join("apiserver.log")
    }

    /// Its directory (kubeconfig, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// `dir/kubeconfig`: the shared kubeconfig with its server at `address`
/// (`127.0.0.1:PORT`: this server, or a fault proxy in front of one).
pub fn kubeconfig_at(dir: &Path, address: &str) -> PathBuf {
    let shared = std::fs::read_to_string(local_env().var("KUBECONFIG")).unwrap();
    let kubeconfig: String = shared
        .lines()
        .map(|line| match line.split_once("server: ") {
            Some((indent, _)) => format!("{indent}server: https://{address}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig).unwrap();
    path
}

/// `127.0.0.1:PORT` of the shared API server, from its kubeconfig.
pub fn shared_address() -> String {
    let shared = std::fs::read_to_string(local_env().var("KUBECONFIG")).unwrap();
    shared
        .lines()
        .find_map(|line| line.split_once("server: https://"))
        .map(|(_, address)| address.trim().to_string())
        .expect("a server in the shared kubeconfig")
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
