//! The server edge under attack, against the real binary on loopback: slow headers and
//! bodies are cut off at their deadlines, a connection flood from one address is capped
//! while another address is served, HTTP/2 stream floods and rapid resets are bounded, and
//! SIGTERM over TLS answers a sign-in in flight and keeps its audit row.

// Test code: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::fake_truenas::{FakeOptions, FakeTrueNas, FakeUser, Flavour};
use support::server_process::{ServeOptions, ServerProcess};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PW: &str = "alice-password";

async fn fake() -> FakeTrueNas {
    FakeTrueNas::start(Flavour::V26, vec![FakeUser::new("alice", PW)]).await
}

async fn connect_from(local: Ipv4Addr, port: u16) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((local, 0)))
        .expect("bind a loopback source address");
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .expect("connect")
}

/// Reads until the server closes (EOF or reset) or `limit` passes; returns what was read
/// and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (seen, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (seen, true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_header_is_cut_off_at_the_header_timeout() {
    let fake = fake().await;
    let server = ServerProcess::start(
        &fake,
        ServeOptions::default().server_key("header_timeout_secs = 2"),
    )
    .await;
    let started = Instant::now();
    // A client that sends nothing at all is still in hyper-util's protocol sniffing, where
    // hyper's header timer does not run yet.
    let mut silent = connect_from(Ipv4Addr::LOCALHOST, server.port()).await;
    let silent = tokio::spawn(async move {
        let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(30)).await;
        (closed, started.elapsed())
    });
    let mut stream = connect_from(Ipv4Addr::LOCALHOST, server.port()).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("first part");
    let (mut reader, mut writer) = stream.into_split();
    // One more header byte a second, as a slowloris client keeps a connection alive.
    let dripping = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if writer.write_all(b"a").await.is_err() {
                return;
            }
        }
    });
    let mut buf = [0u8; 1024];
    let closed_after = loop {
        match tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf)).await {
            Err(_) => panic!("still open 30 s after connecting"),
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => continue,
        }
    };
    dripping.abort();
    assert!(
        closed_after >= Duration::from_millis(1500),
        "closed after {closed_after:?}, before the header timeout (2 s)"
    );
    assert!(
        closed_after <= Duration::from_secs(3),
        "closed after {closed_after:?}; header_timeout_secs = 2 allows 3 s"
    );
    let (closed, silent_for) = silent.await.expect("silent client");
    assert!(closed, "a silent connection was still open 30 s later");
    assert!(
        (Duration::from_millis(1500)..=Duration::from_secs(3)).contains(&silent_for),
        "a silent connection closed after {silent_for:?}; header_timeout_secs = 2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_gets_408_at_the_body_timeout() {
    let fake = fake().await;
    let server = ServerProcess::start(
        &fake,
        ServeOptions::default().server_key("body_timeout_secs = 2"),
    )
    .await;
    let started = Instant::now();
    let mut stream = connect_from(Ipv4Addr::LOCALHOST, server.port()).await;
    stream
        .write_all(
            b"POST /api/v1/login HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"username",
        )
        .await
        .expect("head and 10 bytes of the body");
    let (seen, closed) = read_until_closed(&mut stream, Duration::from_secs(30)).await;
    let elapsed = started.elapsed();
    assert!(closed, "still open 30 s later");
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.starts_with("HTTP/1.1 408"),
        "expected a 408 answer, got {text:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(1500),
        "answered after {elapsed:?}, before the body timeout (2 s)"
    );
    assert!(
        elapsed <= Duration::from_secs(3),
        "answered after {elapsed:?}; body_timeout_secs = 2 allows 3 s"
    );
}

const FLOOD: usize = 3000;
const PER_IP: usize = 256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_is_capped_and_others_are_served() {
    let fake = fake().await;
    let server = ServerProcess::start(
        &fake,
        ServeOptions {
            metrics_listener: true,
            ..ServeOptions::default()
        }
        // Long enough that the connections under the cap are still open when counted.
        .server_key("header_timeout_secs = 300")
        .server_key(&format!("max_connections_per_ip = {PER_IP}")),
    )
    .await;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        let socket = TcpSocket::new_v4().expect("socket");
        let mut stream = match socket
            .connect(SocketAddr::from(([127, 0, 0, 1], server.port())))
            .await
        {
            Ok(stream) => stream,
            // The refusal's reset can arrive before the client saw its connect complete.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                closed.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            Err(e) => panic!("connect: {e}"),
        };
        let closed = Arc::clone(&closed);
        readers.push(tokio::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }));
    }

    // Another address is served at once while the flood holds its connections.
    let asked = Instant::now();
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 2), server.port()).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let (answer, _) = read_until_closed(&mut other, Duration::from_secs(5)).await;
    let took = asked.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "127.0.0.2 got {answer:?}"
    );
    assert!(took <= Duration::from_secs(1), "127.0.0.2 waited {took:?}");

    // Every connection over the cap is closed, promptly.
    let over_cap = FLOOD - PER_IP;
    let deadline = Instant::now() + Duration::from_secs(30);
    while closed.load(Ordering::SeqCst) < over_cap {
        assert!(
            Instant::now() < deadline,
            "only {} of the {over_cap} connections over the cap were closed",
            closed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        closed.load(Ordering::SeqCst),
        over_cap,
        "connections under the cap must stay open until their header timeout"
    );
    let refused = server
        .metric("passgate_connections_refused_total{reason=\"max_connections_per_ip\"}")
        .await;
    assert!(
        refused >= over_cap as f64,
        "refused counter {refused}, expected at least {over_cap}"
    );
    let open = server.metric("passgate_connections_open").await;
    assert!(
        (PER_IP as f64..=(PER_IP + 3) as f64).contains(&open),
        "open connections gauge {open}, expected {PER_IP} (+ the scrape)"
    );
    let rss_mib = server.rss_kib() / 1024;
    assert!(rss_mib < 150, "RSS {rss_mib} MiB under the flood");
    for reader in readers {
        reader.abort();
    }
}

// --- HTTP/2, spoken frame by frame (h2c with prior knowledge) ---------------------------

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const REFUSED_STREAM: u32 = 0x7;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("small frame");
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK block of static-table entries and literals without indexing (no Huffman).
fn request_headers(post: bool, path: &str) -> Vec<u8> {
    let mut block = vec![if post { 0x83 } else { 0x82 }, 0x86];
    let literal = |block: &mut Vec<u8>, prefix: &[u8], value: &str| {
        block.extend_from_slice(prefix);
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    };
    literal(&mut block, &[0x04], path); // :path
    literal(&mut block, &[0x01], "127.0.0.1"); // :authority
    if post {
        literal(&mut block, &[0x0f, 0x10], "application/json"); // content-type (index 31)
    }
    block
}

#[derive(Debug, Default)]
struct Seen {
    max_concurrent_streams: Option<u32>,
    refused: Vec<u32>,
    /// Response HEADERS frames.
    answers: usize,
    goaway: Option<u32>,
    closed: bool,
}

/// Reads frames (acknowledging the server's settings and pings) until `done` holds, the connection
/// closes, or the deadline passes.
async fn read_frames(
    stream: &mut TcpStream,
    limit: Duration,
    done: impl Fn(&Seen) -> bool,
) -> Seen {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = Seen::default();
    loop {
        if done(&seen) {
            return seen;
        }
        let mut head = [0u8; 9];
        match tokio::time::timeout_at(deadline, stream.read_exact(&mut head)).await {
            Err(_) => return seen,
            Ok(Err(_)) => {
                seen.closed = true;
                return seen;
            }
            Ok(Ok(_)) => {}
        }
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if tokio::time::timeout_at(deadline, stream.read_exact(&mut payload))
            .await
            .map_or(true, |r| r.is_err())
        {
            seen.closed = true;
            return seen;
        }
        match kind {
            SETTINGS if flags & ACK == 0 => {
                for pair in payload.chunks_exact(6) {
                    if u16::from_be_bytes([pair[0], pair[1]]) == SETTINGS_MAX_CONCURRENT_STREAMS {
                        seen.max_concurrent_streams =
                            Some(u32::from_be_bytes([pair[2], pair[3], pair[4], pair[5]]));
                    }
                }
                let _ = stream.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            RST_STREAM
                if payload.len() == 4
                    && u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        == REFUSED_STREAM =>
            {
                seen.refused.push(id);
            }
            HEADERS => seen.answers += 1,
            // As a real client does; h2's graceful close waits for this answer.
            PING if flags & ACK == 0 => {
                let _ = stream.write_all(&frame(PING, ACK, 0, &payload)).await;
            }
            GOAWAY if payload.len() >= 8 => {
                seen.goaway = Some(u32::from_be_bytes([
                    payload[4], payload[5], payload[6], payload[7],
                ]));
            }
            _ => {}
        }
    }
}

async fn h2c(port: u16) -> TcpStream {
    let mut stream = connect_from(Ipv4Addr::LOCALHOST, port).await;
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.expect("preface");
    stream
}

/// GET /healthz over a fresh HTTP/1.1 connection from 127.0.0.2.
async fn still_serves(port: u16) {
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 2), port).await;
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let (answer, _) = read_until_closed(&mut other, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "got {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_over_the_limit_are_refused() {
    let fake = fake().await;
    let server = ServerProcess::start(&fake, ServeOptions::default()).await;
    let mut stream = h2c(server.port()).await;
    // 100 sign-ins whose bodies never come: each holds its stream open.
    const OPENED: u32 = 100;
    let mut burst = Vec::new();
    for n in 0..OPENED {
        let block = request_headers(true, "/api/v1/login");
        burst.extend(frame(HEADERS, END_HEADERS, 2 * n + 1, &block));
    }
    stream.write_all(&burst).await.expect("burst");
    let seen = read_frames(&mut stream, Duration::from_secs(20), |s| {
        s.max_concurrent_streams.is_some() && s.refused.len() >= 36 || s.goaway.is_some()
    })
    .await;
    assert_eq!(seen.max_concurrent_streams, Some(64), "{seen:?}");
    assert_eq!(
        seen.refused.len(),
        (OPENED - 64) as usize,
        "streams over the limit must be refused: {seen:?}"
    );
    assert!(seen.refused.iter().all(|id| *id > 2 * 64), "{seen:?}");
    assert_eq!(seen.goaway, None, "{seen:?}");
    // The open streams end cleanly once their (empty) bodies end.
    let mut ends = Vec::new();
    for n in 0..64 {
        ends.extend(frame(DATA, END_STREAM, 2 * n + 1, &[]));
    }
    let _ = stream.write_all(&ends).await;
    still_serves(server.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_rapid_reset_flood_gets_goaway_and_others_are_served() {
    let fake = fake().await;
    let server = ServerProcess::start(&fake, ServeOptions::default()).await;
    let mut stream = h2c(server.port()).await;
    let mut burst = Vec::new();
    let block = request_headers(false, "/healthz");
    for n in 0..500u32 {
        let id = 2 * n + 1;
        burst.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &block));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    // The server may close while the burst is still being written.
    let _ = stream.write_all(&burst).await;
    let seen = read_frames(&mut stream, Duration::from_secs(20), |s| s.closed).await;
    assert_eq!(
        seen.goaway,
        Some(ENHANCE_YOUR_CALM),
        "a rapid-reset flood must end with GOAWAY(ENHANCE_YOUR_CALM): {seen:?}"
    );
    assert!(
        seen.closed,
        "the connection must close after GOAWAY: {seen:?}"
    );
    still_serves(server.port()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_at_the_idle_timeout() {
    let fake = fake().await;
    let server = ServerProcess::start(
        &fake,
        ServeOptions::default().server_key("idle_timeout_secs = 2"),
    )
    .await;
    let mut stream = h2c(server.port()).await;
    let block = request_headers(false, "/healthz");
    stream
        .write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
        .await
        .expect("request");
    let seen = read_frames(&mut stream, Duration::from_secs(20), |s| s.answers > 0).await;
    assert_eq!(seen.answers, 1, "{seen:?}");
    let answered = Instant::now();
    let seen = read_frames(&mut stream, Duration::from_secs(30), |s| s.closed).await;
    let idle_for = answered.elapsed();
    assert!(
        seen.closed,
        "still open 30 s after its last answer: {seen:?}"
    );
    assert_eq!(
        seen.goaway,
        Some(0),
        "closed with GOAWAY(NO_ERROR): {seen:?}"
    );
    assert!(
        idle_for >= Duration::from_millis(1500),
        "closed after {idle_for:?} idle, before the idle timeout (2 s)"
    );
    assert!(
        idle_for <= Duration::from_secs(4),
        "closed after {idle_for:?} idle; idle_timeout_secs = 2"
    );
}

// --- Graceful shutdown over TLS ---------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_over_tls_answers_the_sign_in_in_flight_and_keeps_its_row() {
    let mut options = FakeOptions::new(Flavour::V26);
    // A wrong password is answered after 2 to 4 s: long enough to be caught in flight.
    options.failure_delay = Duration::from_secs(2);
    let fake = FakeTrueNas::start_with(options, vec![FakeUser::new("alice", PW)]).await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let mut server = ServerProcess::start(
        &fake,
        ServeOptions {
            tls: Some((cert.cert.pem(), cert.signing_key.serialize_pem())),
            ..ServeOptions::default()
        },
    )
    .await;
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("pem"),
        )
        .resolve(
            "localhost",
            SocketAddr::from(([127, 0, 0, 1], server.port())),
        )
        .build()
        .expect("client");
    let url = format!("{}/api/v1/login", server.base_url());
    let sign_in = tokio::spawn(async move {
        client
            .post(url)
            .json(&json!({"username": "alice", "password": "wrong-password"}))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    // In flight: the NAS has the password check and is sitting on its failure delay.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fake
        .calls()
        .iter()
        .any(|c| c == "auth.login_ex:PASSWORD_PLAIN")
    {
        assert!(
            Instant::now() < deadline,
            "the sign-in never reached the NAS"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !sign_in.is_finished(),
        "the sign-in was answered before SIGTERM"
    );
    let term = Instant::now();
    server.sigterm();
    let status = sign_in.await.expect("task");
    assert_eq!(
        status.as_ref().ok(),
        Some(&401),
        "the sign-in in flight must get its answer: {status:?}\n{}",
        server.stderr()
    );
    // Default grace 10 s; the audit drain after it is quick.
    let exit = server.wait_exit(Duration::from_secs(15)).await;
    let exit = exit.unwrap_or_else(|| panic!("still running 15 s after SIGTERM"));
    assert!(exit.success(), "exit {exit:?}\n{}", server.stderr());
    assert!(
        term.elapsed() < Duration::from_secs(12),
        "took {:?}",
        term.elapsed()
    );

    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(server.database())
        .read_only(true);
    let pool = sqlx::SqlitePool::connect_with(options).await.expect("db");
    let (rows,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM audit_all WHERE event = 'login_failed' AND username = 'alice'",
    )
    .fetch_one(&pool)
    .await
    .expect("query");
    assert_eq!(rows, 1, "the sign-in's audit row must be on disk");
}
