//! `HEAD` wherever `GET` is served (RFC 9110, 9.3.2): every `GET` route of
//! `app::route_table` is asked both ways over raw HTTP/1.1 on TLS (written
//! and read here byte by byte, not through an HTTP client that would hide
//! a body after a `HEAD`), as the caller the route is for (a signed-in
//! browser, or the toy with its certificate), and must answer the `HEAD`
//! with the `GET`'s status and headers and not one byte of body, ending the
//! answer (the events stream included) so the connection closes. A `HEAD`
//! changes nothing: a message's audio asked for with `HEAD` is neither
//! delivered nor heard.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use hearth::http::Access;

use crate::harness::{self, Hub, TestToy};

/// One raw exchange: the status line and headers (lower-cased names, in
/// order) and whatever came after the blank line until the server closed
/// the connection (for a `GET`, only what was already there: a stream
/// never ends).
struct Raw {
    status: String,
    headers: Vec<(String, String)>,
    after_head: Vec<u8>,
    closed: bool,
}

fn exchange(
    tls: Arc<rustls::ClientConfig>,
    port: u16,
    method: &str,
    path: &str,
    extra: &str,
) -> Raw {
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(tls, name).expect("tls");
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut s = rustls::StreamOwned::new(conn, tcp);
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost:{port}\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("write");
    s.flush().expect("flush");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut closed = false;
    loop {
        if method == "GET" && buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            // rustls reports a close without close_notify this way.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                closed = true;
                break;
            }
            Err(e) => panic!("{method} {path}: {e} after {} bytes", buf.len()),
        }
    }
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no end of head in {buf:?}"));
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        after_head: buf[end + 4..].to_vec(),
        closed,
    }
}

/// The headers that may differ between two answers a moment apart.
fn comparable(h: &[(String, String)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = h.iter().filter(|(k, _)| k != "date").cloned().collect();
    v.sort();
    v
}

#[actix_web::test]
async fn every_get_route_answers_head_with_the_same_head_and_no_body() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear-head");
    toy.pair(&hub, &parent).await;
    // A message for the toy, so its audio routes have something to serve.
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear-head/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(crate::browser::speech_like_wav(16_000, 1.0))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let message = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A toy waiting to pair, for the pairing poll.
    let mut waiting = TestToy::new("fox-head");
    assert_eq!(waiting.request(&hub).await, 201);
    // A browser's session cookie (pages take cookies, not bearer tokens).
    let (cookie, _) = hub.browser_login().await;

    let browser = Arc::new(harness::tls_config(&hub.ca_pem, None));
    let cert = toy.cert_pem.clone().expect("paired");
    let as_toy = Arc::new(harness::tls_config(
        &hub.ca_pem,
        Some((&cert, &toy.key_pem)),
    ));
    let routes: Vec<_> = hearth::app::route_table()
        .into_iter()
        .filter(|r| r.method == actix_web::http::Method::GET)
        .collect();
    assert!(routes.len() > 15, "the route table lists the GET routes");
    let mut failures = Vec::new();
    let mut statuses = Vec::new();
    for r in routes {
        let path = r
            .path
            .replace("{toy_id}", "bear-head")
            .replace("{pairing_id}", &waiting.pairing_id)
            .replace("{name}", "app.css")
            .replace("{id}", &message)
            .replace("{username}", "mum")
            .replace("{invite_id}", "i0");
        // The long-poll answers at once without `wait`.
        let path = if path == "/toy/v1/inbox" {
            format!("{path}?wait=0")
        } else {
            path
        };
        let (tls, extra) = match r.access {
            Access::Toy => (as_toy.clone(), String::new()),
            _ => (browser.clone(), format!("Cookie: {cookie}\r\n")),
        };
        let port = hub.port;
        let (get, head) = {
            let (tls, extra, path) = (tls.clone(), extra.clone(), path.clone());
            tokio::task::spawn_blocking(move || {
                (
                    exchange(tls.clone(), port, "GET", &path, &extra),
                    exchange(tls, port, "HEAD", &path, &extra),
                )
            })
            .await
            .expect("exchange")
        };
        statuses.push(format!("{} {}", head.status, path));
        if head.status != get.status {
            failures.push(format!(
                "{path}: GET {:?}, HEAD {:?}",
                get.status, head.status
            ));
        }
        if comparable(&head.headers) != comparable(&get.headers) {
            failures.push(format!(
                "{path}: headers differ:\n  GET  {:?}\n  HEAD {:?}",
                comparable(&get.headers),
                comparable(&head.headers)
            ));
        }
        if !head.after_head.is_empty() {
            failures.push(format!(
                "{path}: HEAD sent {} bytes of body",
                head.after_head.len()
            ));
        }
        if !head.closed {
            failures.push(format!("{path}: HEAD answer never ended"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // HEAD changes nothing: a toy's HEAD on its message's audio leaves it
    // queued, a parent's HEAD on a recording leaves it new; the GETs then
    // move them on (the positive control).
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear-head/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(crate::browser::speech_like_wav(16_000, 1.0))
        .send()
        .await
        .expect("send");
    let fresh = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = toy
        .client(&hub)
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .header("idempotency-key", "head-1")
        .body(crate::browser::speech_like_wav(16_000, 1.0))
        .send()
        .await
        .expect("recording");
    assert_eq!(r.status(), 201);
    let recording = r.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let state_of = |id: String| {
        let parent = &parent;
        async move {
            let list = parent.json("/api/v1/messages?toy=bear-head").await;
            list["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .find(|m| m["id"] == id.as_str())
                .map(|m| m["state"].as_str().unwrap_or_default().to_owned())
                .expect("listed")
        }
    };
    let port = hub.port;
    let toy_path = format!("/toy/v1/messages/{fresh}/audio");
    let parent_path = format!("/api/v1/messages/{recording}/audio");
    for method in ["HEAD", "GET"] {
        let (t, b, c) = (as_toy.clone(), browser.clone(), cookie.clone());
        let (tp, pp) = (toy_path.clone(), parent_path.clone());
        let (to_toy, by_parent) = tokio::task::spawn_blocking(move || {
            (
                exchange(t, port, method, &tp, ""),
                exchange(b, port, method, &pp, &format!("Cookie: {c}\r\n")),
            )
        })
        .await
        .expect("exchange");
        assert_eq!(to_toy.status, "HTTP/1.1 200 OK");
        assert_eq!(by_parent.status, "HTTP/1.1 200 OK");
        let want = match method {
            "HEAD" => ("queued", "received"),
            _ => ("delivered", "heard"),
        };
        assert_eq!(
            (
                state_of(fresh.clone()).await.as_str(),
                state_of(recording.clone()).await.as_str()
            ),
            want,
            "after {method}"
        );
    }
    // The walk reached real answers, not only errors.
    for path in [
        "/static/app.css",
        "/toys/bear-head",
        "/api/v1/events",
        "/toy/v1/inbox?wait=0",
    ] {
        let want = format!("HTTP/1.1 200 OK {path}");
        assert!(statuses.contains(&want), "{want} among {statuses:#?}");
    }
}
