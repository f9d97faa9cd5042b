//! The fault suite's proxy (tests/support/fault_proxy.rs) does what each
//! mode says, against a small local server: the faults the other fault
//! tests inject are real ones.

mod support;

use std::io::ErrorKind;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::fault_proxy::{FaultProxy, Mode};

/// A server on 127.0.0.1 that answers every connection's first read with
/// `reply`, then keeps the connection open until the client closes it.
async fn server(reply: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buffer).await {
                    if n == 0 || stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

/// Send a request through `proxy` and read until the connection ends.
async fn exchange(proxy: &FaultProxy) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(proxy.address()).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await?;
    let mut got = vec![0u8; 64];
    let n = stream.read(&mut got).await?;
    got.truncate(n);
    Ok(got)
}

#[tokio::test]
async fn pass_relays_and_refuse_closes_the_port_until_switched_back() {
    let proxy = FaultProxy::start(&server(b"hello").await);
    assert_eq!(exchange(&proxy).await.unwrap(), b"hello");
    proxy.set(Mode::Refuse);
    let refused = support::poll(Duration::from_secs(5), "the port to close", async || {
        TcpStream::connect(proxy.address())
            .await
            .err()
            .filter(|e| e.kind() == ErrorKind::ConnectionRefused)
    })
    .await;
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
    proxy.set(Mode::Pass);
    let back = support::poll(
        Duration::from_secs(5),
        "the port to open again",
        async || exchange(&proxy).await.ok(),
    )
    .await;
    assert_eq!(back, b"hello");
}

#[tokio::test]
async fn reset_after_cuts_the_answer_at_the_byte_budget() {
    let proxy = FaultProxy::start(&server(b"0123456789abcdef").await);
    proxy.set(Mode::ResetAfter(10));
    let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
    stream.write_all(b"x").await.unwrap();
    let mut got = Vec::new();
    let error = stream.read_to_end(&mut got).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");
    assert_eq!(got, b"0123456789");
}

#[tokio::test]
async fn unavailable_answers_503_without_reaching_the_server() {
    let proxy = FaultProxy::start(&server(b"never").await);
    proxy.set(Mode::Unavailable);
    let answer = String::from_utf8(exchange(&proxy).await.unwrap()).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
}

#[tokio::test]
async fn cut_resets_live_connections_and_blackhole_holds_data_until_switched() {
    let proxy = FaultProxy::start(&server(b"pong").await);
    let mut live = TcpStream::connect(proxy.address()).await.unwrap();
    live.write_all(b"ping").await.unwrap();
    let mut buffer = [0u8; 4];
    live.read_exact(&mut buffer).await.unwrap();
    proxy.cut();
    let mut rest = Vec::new();
    let error = live.read_to_end(&mut rest).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset, "{error}");

    proxy.set(Mode::Blackhole);
    let mut held = TcpStream::connect(proxy.address()).await.unwrap();
    held.write_all(b"ping").await.unwrap();
    let read = tokio::time::timeout(Duration::from_millis(300), held.read(&mut buffer)).await;
    assert!(read.is_err(), "a blackholed connection answered: {read:?}");
    proxy.set(Mode::Pass);
    held.read_exact(&mut buffer).await.unwrap();
    assert_eq!(&buffer, b"pong");
    assert_eq!(proxy.accepted(), 2);
}
