//! `portier serve`'s listener against slow and idle clients (issue 12.5): every timeout closes
//! what it should, and the connection limit keeps the server answering. These time real
//! sockets, so the limits are set small (tenths of a second).

use std::time::{Duration, Instant};

use shared::http_server::{HttpLimits, serve};
use testkit::harness::{HookAuth, spawn_app};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: HttpLimits = HttpLimits {
    header_timeout: Duration::from_millis(300),
    request_timeout: Duration::from_millis(500),
    connection_lifetime: Duration::from_millis(800),
    max_connections: 8,
};

/// Portier's routes behind the listener with [`LIMITS`]; returns its address.
async fn start() -> (testkit::harness::TestApp, String) {
    let app = spawn_app(HookAuth::Signature).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let router = shared::serve::router(app.runtime.clone());
    tokio::spawn(serve(listener, router, LIMITS, std::future::pending()));
    (app, addr)
}

/// Reads until the server closes the connection; returns what it sent and how long it took.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server kept the connection open for 5 s"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), started.elapsed())
}

#[tokio::test]
async fn half_sent_headers_are_closed_after_the_header_timeout() {
    let (_app, addr) = start().await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"POST /hooks/nexudus/space-berlin/AccessControlUpdate HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let (_, after) = until_closed(&mut s).await;
    println!("half-sent headers closed after {} ms", after.as_millis());
    assert!(after < Duration::from_secs(2), "{after:?}");
}

#[tokio::test]
async fn an_unfinished_body_is_answered_408_after_the_request_timeout() {
    let (_app, addr) = start().await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(
        b"POST /hooks/nexudus/space-berlin/AccessControlUpdate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[{\"Id\":4",
    )
    .await
    .expect("write");
    let (answer, after) = until_closed(&mut s).await;
    println!(
        "unfinished body answered after {} ms: {}",
        after.as_millis(),
        answer.lines().next().unwrap_or("")
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let (_app, addr) = start().await;
    let mut s = TcpStream::connect(&addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let (answer, after) = until_closed(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    println!("idle keep-alive closed after {} ms", after.as_millis());
    assert!(after < Duration::from_secs(3), "{after:?}");
}

#[tokio::test]
async fn many_idle_connections_never_stop_healthz_for_long() {
    let (_app, addr) = start().await;
    // Four times the limit, each holding a connection open and sending nothing.
    let mut idle = Vec::new();
    for _ in 0..(LIMITS.max_connections * 4) {
        idle.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let started = Instant::now();
    let client = reqwest::Client::new();
    let status = client
        .get(format!("http://{addr}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    println!(
        "/healthz behind {} idle connections: {status} after {} ms",
        idle.len(),
        started.elapsed().as_millis()
    );
    assert_eq!(status, 200);
    drop(idle);
}
