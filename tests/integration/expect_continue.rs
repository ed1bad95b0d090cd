//! Issue 9: a client that sends `Expect: 100-continue` with a
//! `Content-Length` over the endpoint's limit gets `413` at once, never a
//! `100 Continue` inviting a body the hub would refuse; within the limit the
//! hub invites the body (the positive control: the check can fail).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::Hub;

/// Sends `head` (a request head without its body) over TLS and returns what
/// the hub answered until its first head ended (or 10 s passed).
fn first_answer(port: u16, head: String) -> String {
    let cfg = Arc::new(hearth::toy::tls::pairing_config().expect("tls"));
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(cfg, name).expect("conn");
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(head.as_bytes()).expect("head");
    let (mut got, mut buf, started) = (Vec::new(), [0u8; 4096], Instant::now());
    while started.elapsed() < Duration::from_secs(10) {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                let is_error = !text.starts_with("HTTP/1.1 100");
                // A 100 ends at its blank line; an error once its JSON came.
                if text.contains("\r\n\r\n") && (!is_error || text.ends_with('}')) {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

fn head(path: &str, len: usize, content_type: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    )
}

#[actix_web::test]
async fn expect_100_continue_over_the_limit_is_413_without_continue() {
    let hub = Hub::start().await;
    let port = hub.port;
    let cases = [
        (
            "/api/v1/toys/bear/messages",
            hearth::messaging::PARENT_LIMIT + 1,
            "audio/wav",
            413,
        ),
        (
            "/toy/v1/recordings",
            hearth::messaging::TOY_LIMIT + 1,
            "audio/ogg",
            413,
        ),
        (
            "/api/v1/login",
            hearth::http::JSON_LIMIT + 1,
            "application/json",
            413,
        ),
        (
            "/toy/v1/pair",
            hearth::toy_api::pair::PAIR_LIMIT + 1,
            "application/json",
            413,
        ),
        // Within the limit the body is invited.
        ("/api/v1/login", 40, "application/json", 100),
        ("/api/v1/toys/bear/messages", 1 << 20, "audio/wav", 100),
    ];
    for (path, len, ct, want) in cases {
        let text = tokio::task::spawn_blocking(move || first_answer(port, head(path, len, ct)))
            .await
            .expect("join");
        let status = text.split(' ').nth(1).unwrap_or("");
        assert_eq!(status, want.to_string(), "{path} with {len} bytes: {text}");
        if want == 413 {
            assert!(!text.contains("100 Continue"), "{path}: {text}");
            assert!(text.contains("payload_too_large"), "{path}: {text}");
            assert!(
                text.to_ascii_lowercase().contains("connection: close"),
                "{path}: {text}"
            );
        }
    }
}
