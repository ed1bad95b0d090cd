//! Voice messages end to end over real TLS: parent → toy with the
//! long-poll, toy → parent with idempotency keys, states and events, WAV
//! for browsers, delete, keep and retention.
//!
//! The oracles are independent of the hub: input WAVs are written by
//! `hound`, Ogg recordings by `opusenc` (opus-tools), durations are read by
//! `opusinfo`, and Ogg packets are compared with the `ogg` crate.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Hub, Parent, TestToy, run_with_timeout};

/// A WAV of `secs` seconds of a 440 Hz tone at `rate`, 16-bit mono,
/// written by `hound` (not the hub's own WAV writer).
pub fn tone_wav(secs: f64, rate: u32) -> Vec<u8> {
    tone_wav_channels(secs, rate, 1)
}

/// [`tone_wav`] with `channels` channels (the tone is 440 Hz on the
/// first, 660 Hz on the others).
pub fn tone_wav_channels(secs: f64, rate: u32, channels: u16) -> Vec<u8> {
    let n = (secs * rate as f64) as usize;
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut out, spec).expect("a WAV writer");
        for i in 0..n {
            for c in 0..channels {
                let f = if c == 0 { 440.0 } else { 660.0 };
                let x = 0.3 * (i as f64 * f * std::f64::consts::TAU / rate as f64).sin();
                w.write_sample((x * 32767.0) as i16).expect("a sample");
            }
        }
        w.finalize().expect("finalize");
    }
    out.into_inner()
}

pub async fn paired(hub: &Hub) -> (Parent, TestToy) {
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(hub, &parent).await;
    (parent, toy)
}

pub async fn send_wav(hub: &Hub, parent: &Parent, body: Vec<u8>) -> reqwest::Response {
    parent
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(body)
        .send()
        .await
        .expect("send")
}

/// The playback length `opusinfo` (opus-tools) reports for `ogg`, in ms;
/// `None` (after printing `skipped:`) when opusinfo is not installed.
pub fn opusinfo_ms(ogg: &[u8]) -> Option<i64> {
    if !crate::harness::have("opusinfo") {
        crate::skips::skip(
            "the independent duration check needs opusinfo",
            "sudo apt install opus-tools",
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("m.ogg");
    std::fs::write(&f, ogg).expect("write");
    let out = run_with_timeout(std::process::Command::new("opusinfo").arg(&f), 30, None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "opusinfo refused the stream: {text}");
    // "Playback length: 0m:02.500s"
    let len = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Playback length: "))
        .unwrap_or_else(|| panic!("no playback length in: {text}"));
    let (min, sec) = len
        .trim_end_matches('s')
        .split_once("m:")
        .unwrap_or_else(|| panic!("odd length {len:?}"));
    let min: f64 = min.parse().expect("minutes");
    let sec: f64 = sec.parse().expect("seconds");
    Some(((min * 60.0 + sec) * 1000.0).round() as i64)
}

fn opusinfo_duration_ok(ogg: &[u8], expect_ms: i64) {
    if let Some(ms) = opusinfo_ms(ogg) {
        assert!(
            (ms - expect_ms).abs() <= 20,
            "opusinfo: {ms} ms, expected {expect_ms}"
        );
    }
}

/// Encodes `wav` with `opusenc` (opus-tools) and `args`; `None` (after
/// printing `skipped:`) when opusenc is not installed.
pub fn opusenc(wav: &[u8], args: &[&str]) -> Option<Vec<u8>> {
    if !crate::harness::have("opusenc") {
        crate::skips::skip(
            "the opusenc interoperability check needs opusenc",
            "sudo apt install opus-tools",
        );
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (i, o) = (dir.path().join("in.wav"), dir.path().join("out.ogg"));
    std::fs::write(&i, wav).expect("write");
    let out = run_with_timeout(
        std::process::Command::new("opusenc")
            .arg("--quiet")
            .args(args)
            .arg(&i)
            .arg(&o),
        60,
        None,
    );
    assert!(
        out.status.success(),
        "opusenc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(std::fs::read(&o).expect("opusenc output"))
}

/// The Opus audio packets of an Ogg stream (headers skipped), read with the
/// `ogg` crate, and the channel count of its OpusHead.
pub fn opus_packets(ogg: &[u8]) -> (u8, Vec<Vec<u8>>) {
    let mut r = ogg::PacketReader::new(std::io::Cursor::new(ogg));
    let mut packets = Vec::new();
    while let Some(p) = r.read_packet().expect("a valid Ogg stream") {
        packets.push(p.data);
    }
    assert!(packets.len() >= 2, "OpusHead and OpusTags");
    assert!(
        packets[0].starts_with(b"OpusHead"),
        "the first packet is OpusHead"
    );
    assert!(
        packets[1].starts_with(b"OpusTags"),
        "the second packet is OpusTags"
    );
    let channels = packets[0][9];
    (channels, packets.split_off(2))
}

#[actix_web::test]
async fn parent_to_toy_long_poll_download_played_and_events() {
    let hub = Hub::start().await;
    let (parent, toy) = paired(&hub).await;
    let toy_client = toy.client(&hub);
    // Open the event stream first.
    let events = parent
        .client
        .get(hub.url("/api/v1/events"))
        .bearer_auth(&parent.token)
        .send()
        .await
        .expect("events");
    assert_eq!(events.status(), 200);
    assert!(
        events.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/event-stream")
    );
    let mut stream = events.bytes_stream();
    // The toy waits in a long-poll. Half a minute on, its next request
    // refreshes its last-seen time, which shows the parent that the poll
    // reached the hub (no sleep to guess when it has).
    let seen_before = parent.json("/api/v1/toys").await["paired"][0]["last_seen"].clone();
    hub.clock.advance(time::Duration::seconds(31));
    let (tx, mut rx) = tokio::sync::oneshot::channel();
    let (c2, url) = (toy_client.clone(), hub.url("/toy/v1/inbox?wait=20"));
    actix_web::rt::spawn(async move {
        let v: Value = c2
            .get(url)
            .send()
            .await
            .expect("inbox")
            .json()
            .await
            .expect("json");
        let _ = tx.send((Instant::now(), v));
    });
    crate::harness::eventually(10, "the long-poll to reach the hub", || async {
        let seen = parent.json("/api/v1/toys").await["paired"][0]["last_seen"].clone();
        (seen != seen_before).then_some(())
    })
    .await;
    assert!(
        rx.try_recv().is_err(),
        "the long-poll is still waiting: there is nothing to deliver yet"
    );
    let r = send_wav(&hub, &parent, tone_wav(2.5, 44_100)).await;
    assert_eq!(r.status(), 201);
    let sent_at = Instant::now();
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["duration_ms"], 2500);
    let id = v["id"].as_str().expect("id").to_owned();
    let (answered_at, inbox) = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("long-poll answered")
        .expect("value");
    assert!(
        answered_at.duration_since(sent_at) < Duration::from_secs(1),
        "the long-poll must answer within 1 s"
    );
    assert_eq!(inbox["messages"][0]["id"], id.as_str());
    assert_eq!(inbox["messages"][0]["from"], "mum");
    assert_eq!(inbox["messages"][0]["duration_ms"], 2500);
    // Download: Ogg Opus that an independent decoder accepts, of the right length.
    let audio = toy_client
        .get(hub.url(&format!("/toy/v1/messages/{id}/audio")))
        .send()
        .await
        .expect("audio");
    assert_eq!(audio.headers()["content-type"], "audio/ogg");
    let ogg = audio.bytes().await.expect("bytes").to_vec();
    assert_eq!(inbox["messages"][0]["bytes"], ogg.len());
    opusinfo_duration_ok(&ogg, 2500);
    let list = parent.json("/api/v1/messages?toy=bear").await;
    assert_eq!(list["messages"][0]["state"], "delivered");
    for _ in 0..2 {
        let r = toy_client
            .post(hub.url(&format!("/toy/v1/messages/{id}/played")))
            .send()
            .await
            .expect("played");
        assert_eq!(r.status(), 204, "played is idempotent");
    }
    let list = parent.json("/api/v1/messages?toy=bear").await;
    assert_eq!(list["messages"][0]["state"], "played");
    let inbox: Value = toy_client
        .get(hub.url("/toy/v1/inbox"))
        .send()
        .await
        .expect("inbox")
        .json()
        .await
        .expect("json");
    assert!(
        inbox["messages"].as_array().expect("list").is_empty(),
        "played messages leave the inbox"
    );
    // The event stream saw the new message and each state.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(seen.contains("\"state\":\"played\"")) {
        assert!(Instant::now() < deadline, "events so far: {seen}");
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event")
            .expect("chunk")
            .expect("bytes");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: message"));
    for state in ["queued", "delivered", "played"] {
        assert!(
            seen.contains(&format!("\"state\":\"{state}\"")),
            "no {state} event in {seen}"
        );
    }
    // Another toy cannot see this message.
    let mut other = TestToy::new("owl");
    other.pair(&hub, &parent).await;
    let r = other
        .client(&hub)
        .get(hub.url(&format!("/toy/v1/messages/{id}/audio")))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 404);
    // wait out of range.
    let r = toy_client
        .get(hub.url("/toy/v1/inbox?wait=61"))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
}

#[actix_web::test]
async fn toy_recordings_idempotency_wav_for_browsers_heard_and_delete() {
    let hub = Hub::start().await;
    let (parent, toy) = paired(&hub).await;
    let c = toy.client(&hub);
    let upload = |body: Vec<u8>, key: &str| {
        c.post(hub.url("/toy/v1/recordings"))
            .header("content-type", "audio/wav")
            .header("idempotency-key", key)
            .body(body)
            .send()
    };
    let first = upload(tone_wav(1.0, 16_000), "rec-1")
        .await
        .expect("upload");
    assert_eq!(first.status(), 201);
    let a: Value = first.json().await.expect("json");
    let again = upload(tone_wav(3.0, 16_000), "rec-1").await.expect("retry");
    assert_eq!(
        again.status(),
        200,
        "a retry with the same key stores nothing new"
    );
    let b: Value = again.json().await.expect("json");
    assert_eq!(a, b);
    // A failed attempt does not use up its key.
    let bad = upload(b"RIFF....garbage".to_vec(), "rec-2")
        .await
        .expect("bad");
    assert_eq!(bad.status(), 422);
    let ok = upload(tone_wav(1.0, 8_000), "rec-2").await.expect("good");
    assert_eq!(ok.status(), 201);
    let r = c
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .header("idempotency-key", "bad key!")
        .body(tone_wav(1.0, 8000))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 400);
    let r = c
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/mpeg")
        .body(vec![0u8; 100])
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 415);
    // Over the size limit: refused from the headers alone, before the body
    // is sent (docs/toy-protocol.md section 2, `Expect: 100-continue`).
    let head = raw_request_head(&hub, &toy, "POST /toy/v1/recordings", 5 << 20).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    let r = c
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .body(tone_wav(121.0, 8_000))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 413);
    let list = parent.json("/api/v1/messages?toy=bear").await;
    let msgs = list["messages"].as_array().expect("list");
    assert_eq!(msgs.len(), 2, "exactly two recordings are stored");
    assert!(
        msgs.iter().all(|m| m["direction"] == "from_toy"
            && m["state"] == "received"
            && m["from"] == "Bear")
    );
    let id = a["id"].as_str().expect("id");
    // WAV for browsers that cannot play Ogg; opening it marks it heard.
    let wav = parent
        .get(&format!("/api/v1/messages/{id}/audio?format=wav"))
        .await;
    assert_eq!(wav.headers()["content-type"], "audio/wav");
    assert_eq!(wav.headers()["cache-control"], "no-store");
    let bytes = wav.bytes().await.expect("bytes");
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes.to_vec())).expect("a valid WAV");
    let spec = reader.spec();
    let ms = reader.duration() as u64 * 1000 / spec.sample_rate as u64;
    assert!((ms as i64 - 1000).abs() <= 20, "{ms} ms");
    let list = parent.json("/api/v1/messages?toy=bear").await;
    let m = list["messages"]
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["id"] == id)
        .expect("listed")
        .clone();
    assert_eq!(m["state"], "heard");
    // Delete.
    assert_eq!(
        parent
            .delete(&format!("/api/v1/messages/{id}"))
            .await
            .status(),
        204
    );
    assert_eq!(
        parent
            .get(&format!("/api/v1/messages/{id}/audio"))
            .await
            .status(),
        404
    );
    assert_eq!(
        parent
            .delete(&format!("/api/v1/messages/{id}"))
            .await
            .status(),
        404
    );
}

#[actix_web::test]
async fn bad_uploads_from_parents_are_refused_and_harm_nothing() {
    let hub = Hub::start().await;
    let (parent, _toy) = paired(&hub).await;
    assert_eq!(
        send_wav(&hub, &parent, tone_wav(1.0, 48_000))
            .await
            .status(),
        201
    );
    let mut truncated = tone_wav(2.0, 48_000);
    truncated.truncate(truncated.len() / 2);
    let r = send_wav(&hub, &parent, truncated).await;
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_audio");
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/ogg")
        .body(tone_wav(1.0, 8000))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 422, "a WAV declared as Ogg");
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 415);
    let r = parent
        .client
        .post(hub.url("/api/v1/toys/nobody/messages"))
        .bearer_auth(&parent.token)
        .header("content-type", "audio/wav")
        .body(tone_wav(1.0, 8000))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 404);
    let list = parent.json("/api/v1/messages").await;
    assert_eq!(
        list["messages"].as_array().expect("list").len(),
        1,
        "only the good message is stored"
    );
    let r = parent.get("/api/v1/messages?limit=0").await;
    assert_eq!(r.status(), 400);
    assert_eq!(hub.state.store.integrity_check().expect("check"), None);
}

#[actix_web::test]
async fn retention_keeps_kept_messages_and_frees_space() {
    let hub = Hub::start().await;
    let (parent, toy) = paired(&hub).await;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let r = send_wav(&hub, &parent, tone_wav(20.0, 48_000)).await;
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.expect("json");
        ids.push(v["id"].as_str().expect("id").to_owned());
    }
    let kept = ids[0].clone();
    let r = parent
        .patch(&format!("/api/v1/messages/{kept}"), json!({"keep": true}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["keep"], true);
    assert!(v["expires_at"].is_null());
    let list = parent.json("/api/v1/messages").await;
    assert!(
        list["messages"]
            .as_array()
            .expect("list")
            .iter()
            .filter(|m| m["id"] != kept.as_str())
            .all(|m| m["expires_at"].is_string())
    );
    // Nothing expires before 30 days.
    hub.clock.advance(time::Duration::days(29));
    assert_eq!(
        hearth::messaging::retention_sweep(&hub.state)
            .await
            .expect("sweep"),
        0
    );
    hub.state.store.reclaim_space().await.expect("checkpoint");
    let before = hub.state.store.file_size();
    hub.clock.advance(time::Duration::days(2));
    assert_eq!(
        hearth::messaging::retention_sweep(&hub.state)
            .await
            .expect("sweep"),
        5
    );
    let after = hub.state.store.file_size();
    assert!(
        after < before,
        "the space is given back: {before} -> {after}"
    );
    // A month passed: the old session ended; sign in again.
    let parent = Parent {
        token: hub.login("mum", crate::harness::PASSWORD).await,
        ..parent
    };
    let list = parent.json("/api/v1/messages").await;
    let left: Vec<_> = list["messages"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(left, vec![kept]);
    let _ = toy;
    // Keep forever: an admin may turn retention off.
    let r = parent
        .patch("/api/v1/household", json!({"retention_days": null}))
        .await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert!(v["retention_days"].is_null());
}

/// Sends only the head of a request (`Content-Length: len`, `Expect:
/// 100-continue`) as `toy` over a raw TLS connection and returns the hub's
/// final answer (after any `100 Continue`), read within 10 s; no byte of the
/// body is ever sent.
async fn raw_request_head(hub: &Hub, toy: &TestToy, line: &str, len: usize) -> String {
    use std::io::{Read, Write};
    let tls = crate::harness::tls_config(
        &hub.ca_pem,
        Some((toy.cert_pem.as_deref().expect("paired"), &toy.key_pem)),
    );
    let (port, line) = (hub.port, line.to_owned());
    actix_web::rt::task::spawn_blocking(move || {
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
        let conn = rustls::ClientConnection::new(std::sync::Arc::new(tls), name).expect("tls");
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut s = rustls::StreamOwned::new(conn, tcp);
        write!(
            s,
            "{line} HTTP/1.1\r\nHost: localhost\r\nContent-Type: audio/wav\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
        )
        .expect("send the head");
        // Interim answers (`100 Continue`) are skipped: the final answer
        // must come although no byte of the body is ever sent.
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.starts_with(b"HTTP/1.1 1") {
                    got.drain(..end + 4);
                    continue;
                }
                break;
            }
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    })
    .await
    .expect("join")
}

/// Uploads `ogg` as a toy recording; returns the status and JSON.
async fn upload_ogg(hub: &Hub, toy: &TestToy, ogg: Vec<u8>) -> (u16, Value) {
    let r = toy
        .client(hub)
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/ogg")
        .body(ogg)
        .send()
        .await
        .expect("upload");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn ogg_recordings_from_opusenc_over_http_keep_their_packets() {
    let hub = Hub::start().await;
    let (parent, toy) = paired(&hub).await;
    // (what, WAV, opusenc arguments, expected length in ms)
    let cases: [(&str, Vec<u8>, &[&str], i64); 4] = [
        ("mono 20 ms frames", tone_wav(2.0, 48_000), &[], 2000),
        (
            "mono 2.5 ms frames",
            tone_wav(1.5, 16_000),
            &["--framesize", "2.5"],
            1500,
        ),
        (
            "mono 60 ms frames",
            tone_wav(3.0, 44_100),
            &["--framesize", "60"],
            3000,
        ),
        ("stereo", tone_wav_channels(2.5, 48_000, 2), &[], 2500),
    ];
    for (what, wav, args, ms) in cases {
        let Some(ogg) = opusenc(&wav, args) else {
            return;
        };
        let (sent_channels, sent) = opus_packets(&ogg);
        let (status, v) = upload_ogg(&hub, &toy, ogg).await;
        assert_eq!(status, 201, "{what}: {v}");
        let got_ms = v["duration_ms"].as_i64().expect("duration_ms");
        assert!(
            (got_ms - ms).abs() <= 30,
            "{what}: {got_ms} ms, expected {ms}"
        );
        let id = v["id"].as_str().expect("id");
        let r = parent.get(&format!("/api/v1/messages/{id}/audio")).await;
        assert_eq!(r.status(), 200, "{what}");
        assert_eq!(r.headers()["content-type"], "audio/ogg", "{what}");
        let stored = r.bytes().await.expect("bytes").to_vec();
        opusinfo_duration_ok(&stored, ms);
        let (channels, kept) = opus_packets(&stored);
        assert_eq!(channels, 1, "{what}: stored recordings are mono");
        if sent_channels == 1 {
            assert!(
                kept == sent,
                "{what}: a mono recording keeps its Opus packets"
            );
        } else {
            assert!(
                kept != sent,
                "{what}: a stereo recording is re-encoded to mono"
            );
        }
    }
    // Not Opus at all, though declared Ogg: refused, nothing stored.
    let (status, v) = upload_ogg(&hub, &toy, b"OggS but not really".to_vec()).await;
    assert_eq!(status, 422, "{v}");
    let list = parent.json("/api/v1/messages?toy=bear").await;
    assert_eq!(list["messages"].as_array().expect("list").len(), 4);
}
