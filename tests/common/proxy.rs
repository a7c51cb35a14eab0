//! A loopback TCP proxy owned by the tests, for injecting network faults between celeriac
//! and RabbitMQ: cut every connection at once, stall the bytes (of every connection, or of
//! the connections open now only: half-open connections), refuse new connections.
//!
//! It runs on a thread of its own with its own tokio runtime, so it keeps working (and
//! keeps failing on purpose) whatever the test's actix system is doing. Its methods are
//! synchronous: they return once the proxy has done what was asked.

use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

/// What the test asks of the proxy's thread.
enum Command {
    /// Close every current connection (both sides); answers how many were closed.
    CutAll(std_mpsc::Sender<usize>),
    /// Answers how many connections are open now.
    Active(std_mpsc::Sender<usize>),
}

/// State shared between the test and the proxy's thread.
struct Shared {
    /// New connections are accepted and closed at once while set.
    refuse: AtomicBool,
    /// Connections accepted and forwarded so far.
    accepted: AtomicUsize,
    /// Connections accepted and closed at once (while refusing) so far.
    refused: AtomicUsize,
}

/// Which connections hold their bytes.
#[derive(Clone, Copy, Default)]
struct Stall {
    /// Every connection, new ones included.
    all: bool,
    /// Connections accepted before this many had been (numbered from 0 in accept order).
    accepted_before: usize,
}

impl Stall {
    fn holds(&self, connection: usize) -> bool {
        self.all || connection < self.accepted_before
    }
}

/// A loopback TCP proxy to one upstream address.
pub struct Proxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stall: watch::Sender<Stall>,
    commands: Option<mpsc::UnboundedSender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = StdListener::bind("127.0.0.1:0").expect("the proxy binds a loopback port");
        listener
            .set_nonblocking(true)
            .expect("the proxy's listener is non-blocking");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            refuse: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let (stall, stalled) = watch::channel(Stall::default());
        let (commands, receiver) = mpsc::unbounded_channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("test-proxy-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime");
                runtime.block_on(serve(listener, upstream, thread_shared, stalled, receiver));
            })
            .expect("the proxy's thread starts");
        Proxy {
            addr,
            upstream,
            shared,
            stall,
            commands: Some(commands),
            thread: Some(thread),
        }
    }

    /// Starts a proxy to the host and port of an `amqp://` URL.
    pub fn for_url(amqp_url: &str) -> Proxy {
        Proxy::start(socket_addr_of(amqp_url))
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `amqp_url` with its host and port replaced by the proxy's.
    pub fn url(&self, amqp_url: &str) -> String {
        let (scheme, rest) = amqp_url
            .split_once("://")
            .unwrap_or_else(|| panic!("{amqp_url:?} is not a URL (no ://)"));
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        let credentials = match authority.rfind('@') {
            Some(at) => &authority[..=at],
            None => "",
        };
        format!("{scheme}://{credentials}{}{path}", self.addr)
    }

    /// Closes every current connection, both sides, at once; answers how many it closed.
    /// New connections are accepted as before (unless refusing).
    pub fn cut_all(&self) -> usize {
        let (reply, answer) = std_mpsc::channel();
        self.command(Command::CutAll(reply));
        answer
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy did not cut its connections within 10 s")
    }

    /// While on, new connections are accepted and closed at once (the broker looks down);
    /// current connections are left alone (use `cut_all` too for an outage).
    pub fn refuse(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// While on, no byte is forwarded in either direction (connections stay open). Off
    /// also ends `stall_open`.
    pub fn stall(&self, on: bool) {
        self.stall.send_replace(Stall {
            all: on,
            accepted_before: 0,
        });
    }

    /// Stalls the connections open now, for good (until `stall(false)`), without closing
    /// them: each end sees a silent peer, as with a half-open connection. New connections
    /// are forwarded as usual. Answers how many connections it stalled.
    pub fn stall_open(&self) -> usize {
        let accepted = self.shared.accepted.load(Ordering::SeqCst);
        self.stall
            .send_modify(|stall| stall.accepted_before = accepted);
        self.active()
    }

    /// Connections accepted and forwarded so far (refused ones not included).
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections refused so far.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        let (reply, answer) = std_mpsc::channel();
        self.command(Command::Active(reply));
        answer
            .recv_timeout(Duration::from_secs(10))
            .expect("the proxy did not answer within 10 s")
    }

    fn command(&self, command: Command) {
        self.commands
            .as_ref()
            .expect("the proxy is running")
            .send(command)
            .unwrap_or_else(|_| panic!("the proxy's thread has stopped"));
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // Closing the command channel stops the proxy and closes its connections.
        self.commands.take();
        self.stall.send_replace(Stall::default());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The socket address of an `amqp://user:pass@host:port/vhost` URL (port 5672 by default).
pub fn socket_addr_of(amqp_url: &str) -> SocketAddr {
    let rest = amqp_url
        .split_once("://")
        .map_or(amqp_url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let with_port = if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5672")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve the broker address {with_port:?}"))
}

/// The proxy's event loop: accepts, forwards, obeys commands until the test drops it.
async fn serve(
    listener: StdListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    stalled: watch::Receiver<Stall>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let listener = TcpListener::from_std(listener).expect("the proxy's listener");
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if shared.refuse.load(Ordering::SeqCst) {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                let number = shared.accepted.fetch_add(1, Ordering::SeqCst);
                connections.spawn(pipe(client, upstream, number, stalled.clone()));
            }
            command = commands.recv() => match command {
                Some(Command::CutAll(reply)) => {
                    let cut = connections.len();
                    // Aborting a connection's task drops both its sockets: both sides
                    // see the connection close.
                    connections.shutdown().await;
                    let _ = reply.send(cut);
                }
                Some(Command::Active(reply)) => {
                    let _ = reply.send(connections.len());
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Forwards connection `number` both ways until either side closes it.
async fn pipe(
    client: TcpStream,
    upstream: SocketAddr,
    number: usize,
    stalled: watch::Receiver<Stall>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = forward(client_read, server_write, number, stalled.clone()) => {}
        () = forward(server_read, client_write, number, stalled) => {}
    }
}

/// Copies bytes from `from` to `to`, holding them while connection `number` is stalled.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    number: usize,
    mut stalled: watch::Receiver<Stall>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if stalled
            .wait_for(|stall| !stall.holds(number))
            .await
            .is_err()
        {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if stalled
            .wait_for(|stall| !stall.holds(number))
            .await
            .is_err()
        {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
