//! The fault-injecting TCP proxy of the reliability tests (tests/common/proxy.rs), checked
//! against a TCP echo server: it forwards both ways, cuts every connection at once,
//! refuses new connections, and holds bytes while stalled.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::proxy::{socket_addr_of, Proxy};

/// An echo server on a loopback port; each connection it sees end is reported on the channel.
fn echo_server() -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (closed_tx, closed) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let closed_tx = closed_tx.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 1024];
                loop {
                    match stream.read(&mut buffer) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = closed_tx.send(());
            });
        }
    });
    (addr, closed)
}

fn connect(proxy: &Proxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
}

/// Sends `text` and reads the echo, failing with `what` when it does not come back.
fn round_trip(stream: &mut TcpStream, text: &str, what: &str) {
    stream.write_all(text.as_bytes()).expect("write");
    let mut echoed = vec![0u8; text.len()];
    stream
        .read_exact(&mut echoed)
        .unwrap_or_else(|error| panic!("{what}: no echo of {text:?}: {error}"));
    assert_eq!(String::from_utf8_lossy(&echoed), text, "{what}");
}

/// Whether the peer closed the connection (EOF or reset) within the read timeout.
fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

#[test]
fn forwards_both_ways_and_rewrites_amqp_urls() {
    let (upstream, _closed) = echo_server();
    let proxy = Proxy::start(upstream);
    let mut stream = connect(&proxy);
    round_trip(&mut stream, "hello through the proxy", "forwarding");
    round_trip(&mut stream, &"x".repeat(200_000), "a large write");
    assert_eq!(proxy.connections(), 1);
    assert_eq!(proxy.active(), 1);

    let port = proxy.addr().port();
    assert_eq!(
        proxy.url("amqp://guest:guest@127.0.0.1:5672/%2f"),
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
    );
    assert_eq!(
        proxy.url("amqp://localhost"),
        format!("amqp://127.0.0.1:{port}")
    );
    assert_eq!(
        socket_addr_of("amqp://u:p@127.0.0.1:5999/vhost"),
        "127.0.0.1:5999".parse().unwrap()
    );
}

#[test]
fn cut_all_closes_both_sides_of_every_connection_and_new_ones_work() {
    let (upstream, closed) = echo_server();
    let proxy = Proxy::start(upstream);
    let mut first = connect(&proxy);
    let mut second = connect(&proxy);
    round_trip(&mut first, "one", "first connection");
    round_trip(&mut second, "two", "second connection");

    assert_eq!(proxy.cut_all(), 2, "two connections were open");
    assert!(
        closed_by_peer(&mut first),
        "the first client was not disconnected"
    );
    assert!(
        closed_by_peer(&mut second),
        "the second client was not disconnected"
    );
    for side in 0..2 {
        closed
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("upstream side {side} of a cut connection stayed open"));
    }
    assert_eq!(proxy.active(), 0);

    let mut third = connect(&proxy);
    round_trip(&mut third, "three", "a connection after the cut");
    assert_eq!(proxy.connections(), 3);
}

#[test]
fn refusing_closes_new_connections_at_once_until_turned_off() {
    let (upstream, _closed) = echo_server();
    let proxy = Proxy::start(upstream);
    let mut before = connect(&proxy);
    // The kernel completes a handshake before the proxy accepts: make sure it did.
    round_trip(
        &mut before,
        "accepted",
        "a connection opened before refusing",
    );
    proxy.refuse(true);
    let mut refused = connect(&proxy);
    assert!(
        closed_by_peer(&mut refused),
        "a connection made while refusing was not closed"
    );
    assert_eq!(proxy.refused(), 1);
    round_trip(
        &mut before,
        "still here",
        "a connection opened before refusing",
    );
    proxy.refuse(false);
    let mut after = connect(&proxy);
    round_trip(&mut after, "back", "a connection after refusing stopped");
    assert_eq!(proxy.connections(), 2);
}

#[test]
fn stalling_holds_the_bytes_until_released() {
    let (upstream, _closed) = echo_server();
    let proxy = Proxy::start(upstream);
    let mut stream = connect(&proxy);
    round_trip(&mut stream, "before", "before the stall");
    proxy.stall(true);
    stream.write_all(b"held").expect("write");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("read timeout");
    let mut buffer = [0u8; 4];
    match stream.read(&mut buffer) {
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("bytes went through a stalled proxy: {other:?}"),
    }
    proxy.stall(false);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    stream
        .read_exact(&mut buffer)
        .expect("the held bytes arrive once the stall ends");
    assert_eq!(&buffer, b"held");
}
