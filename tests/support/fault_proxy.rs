//! A fault-injecting TCP proxy for the fault suite: berth is pointed at the
//! proxy on 127.0.0.1, the proxy relays to the real server (the API server,
//! MinIO, the registry, the fake GitHub), and a test switches what it does
//! to the traffic while berth runs: refuse connections, reset them after N
//! bytes, delay them, stop forwarding, cut the live ones, or answer 503.
//!
//! The proxy runs on a runtime of its own, so sync and async tests use it
//! alike, and a test's own runtime being busy never stalls the relay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Relay both ways.
    Pass,
    /// Stop listening: new connections are refused (ECONNREFUSED); live
    /// ones go on.
    Refuse,
    /// Relay, but reset each connection (RST) once `n` bytes went from the
    /// server to the client on it: a cut mid-response or mid-watch.
    ResetAfter(usize),
    /// Relay each chunk after this delay.
    Delay(Duration),
    /// Accept and keep connections, forward nothing either way until the
    /// mode changes (a dead network path: no error, no answer).
    Blackhole,
    /// Answer every new request `503 Service Unavailable` (with
    /// `Retry-After: 1`) without reaching the server; for plain-HTTP
    /// upstreams (MinIO, the registry, the fake GitHub). Live connections
    /// go on.
    Unavailable,
}

/// A running proxy; stopped when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    mode: watch::Sender<Mode>,
    cuts: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FaultProxy {
    /// A proxy on a free port of 127.0.0.1 relaying to `upstream`
    /// (`127.0.0.1:PORT`), in [`Mode::Pass`].
    pub fn start(upstream: &str) -> FaultProxy {
        let upstream: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("the proxy's upstream {upstream:?}: {e}"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the fault proxy's runtime");
        // Bound here, not on the runtime: a test's own runtime may be running
        // on this thread, and a runtime cannot block inside another.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the fault proxy");
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Pass);
        let (cuts, _) = watch::channel(0);
        let accepted = Arc::new(AtomicUsize::new(0));
        let relay = Relay {
            upstream,
            mode: mode.subscribe(),
            cuts: cuts.subscribe(),
            accepted: accepted.clone(),
        };
        runtime.spawn(async move {
            let listener = TcpListener::from_std(listener).expect("the fault proxy's listener");
            relay.listen(listener, address).await;
        });
        FaultProxy {
            address,
            mode,
            cuts,
            accepted,
            runtime: Some(runtime),
        }
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT` (or `https://...` with `scheme` "https").
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.address)
    }

    /// Switch to `mode`, from now on.
    pub fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Reset every live connection now (RST both ways); new ones are
    /// handled by the current mode.
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// How many connections the proxy accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The proxy's side that runs on its runtime.
#[derive(Clone)]
struct Relay {
    upstream: SocketAddr,
    mode: watch::Receiver<Mode>,
    cuts: watch::Receiver<u64>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    /// Accept connections while the mode is not [`Mode::Refuse`]; during
    /// it, the port is closed, then bound again.
    async fn listen(mut self, listener: TcpListener, address: SocketAddr) {
        let mut listener = Some(listener);
        loop {
            let refusing = *self.mode.borrow_and_update() == Mode::Refuse;
            match (&listener, refusing) {
                (Some(_), true) => listener = None,
                (None, false) => listener = Some(rebind(address).await),
                _ => {}
            }
            let Some(open) = &listener else {
                if self.mode.changed().await.is_err() {
                    return;
                }
                continue;
            };
            tokio::select! {
                changed = self.mode.changed() => if changed.is_err() { return },
                accepted = open.accept() => {
                    let Ok((client, _)) = accepted else { continue };
                    self.accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(self.clone().connection(client));
                }
            }
        }
    }

    /// One client connection: answered 503, or relayed to the upstream.
    /// Both sockets close with a reset (SO_LINGER 0) when the relay is cut
    /// or the mode's byte budget runs out; a relay that ended by itself has
    /// already seen both sides close.
    async fn connection(self, client: TcpStream) {
        let _ = client.set_nodelay(true);
        if *self.mode.borrow() == Mode::Unavailable {
            unavailable(client).await;
            return;
        }
        let Ok(server) = TcpStream::connect(self.upstream).await else {
            reset(client);
            return;
        };
        for stream in [&client, &server] {
            let _ = stream.set_nodelay(true);
            let _ = stream.set_zero_linger();
        }
        let mut cuts = self.cuts.clone();
        cuts.mark_unchanged();
        // Borrowed halves: an owned write half would send a FIN when
        // dropped, before the reset.
        let (mut client, mut server) = (client, server);
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let up = copy(client_read, server_write, self.mode.clone(), false);
        let down = copy(server_read, client_write, self.mode.clone(), true);
        let both = async {
            tokio::pin!(up, down);
            let (mut up_done, mut down_done) = (false, false);
            while !(up_done && down_done) {
                tokio::select! {
                    flow = &mut up, if !up_done => match flow {
                        Flow::Reset => return,
                        Flow::Ended => up_done = true,
                    },
                    flow = &mut down, if !down_done => match flow {
                        Flow::Reset => return,
                        Flow::Ended => down_done = true,
                    },
                }
            }
        };
        tokio::select! {
            _ = cuts.changed() => {}
            () = both => {}
        }
    }
}

/// Bind `address` again after a refusal (retried: the port may linger).
async fn rebind(address: SocketAddr) -> TcpListener {
    loop {
        match TcpListener::bind(address).await {
            Ok(listener) => return listener,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// How one direction of a relay ended.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    /// The sender closed (or the stream failed): passed on as a close.
    Ended,
    /// The mode's byte budget ran out: the connection is to be reset.
    Reset,
}

/// Copy `from` to `to` under the current mode; `counted`: this is the
/// server-to-client direction, which [`Mode::ResetAfter`] counts.
async fn copy(
    mut from: tokio::net::tcp::ReadHalf<'_>,
    mut to: tokio::net::tcp::WriteHalf<'_>,
    mut mode: watch::Receiver<Mode>,
    counted: bool,
) -> Flow {
    let mut buffer = vec![0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return Flow::Ended;
            }
            Ok(n) => n,
        };
        loop {
            let current = *mode.borrow_and_update();
            match current {
                Mode::Blackhole => {
                    if mode.changed().await.is_err() {
                        return Flow::Ended;
                    }
                    continue;
                }
                Mode::Delay(delay) => tokio::time::sleep(delay).await,
                Mode::ResetAfter(budget) if counted && sent + n >= budget => {
                    let _ = to.write_all(&buffer[..budget.saturating_sub(sent)]).await;
                    return Flow::Reset;
                }
                _ => {}
            }
            break;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return Flow::Ended;
        }
        sent += n;
    }
}

/// Read one request head from `client`, answer 503, close.
async fn unavailable(mut client: TcpStream) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match client.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let body = "fault proxy: service unavailable\n";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\ncontent-type: text/plain\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(answer.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Close `stream` with a reset (RST), not a clean FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
