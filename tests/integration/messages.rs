//! Voice messages end to end over real TLS: parent → toy with the
//! long-poll, toy → parent with idempotency keys, states and events, WAV
//! for browsers, delete, keep and retention.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::harness::{Hub, Parent, TestToy};

/// A WAV of `secs` seconds of a 440 Hz tone at `rate`, 16-bit mono.
pub fn tone_wav(secs: f64, rate: u32) -> Vec<u8> {
    let n = (secs * rate as f64) as usize;
    let samples: Vec<f32> = (0..n)
        .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / rate as f32).sin())
        .collect();
    hearth::audio::encode_wav(&hearth::audio::Pcm {
        sample_rate: rate,
        samples,
    })
}

async fn paired(hub: &Hub) -> (Parent, TestToy) {
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear");
    toy.pair(hub, &parent).await;
    (parent, toy)
}

async fn send_wav(hub: &Hub, parent: &Parent, body: Vec<u8>) -> reqwest::Response {
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

fn opusinfo_duration_ok(ogg: &[u8], expect_ms: i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("m.ogg");
    std::fs::write(&f, ogg).expect("write");
    match std::process::Command::new("opusinfo").arg(&f).output() {
        Err(_) => crate::skips::skip(
            "the independent decoder check needs opusinfo",
            "sudo apt install opus-tools",
        ),
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "opusinfo refused our stream: {text}");
            assert!(text.contains("Playback length"), "{text}");
        }
    }
    let pcm = hearth::audio::decode_ogg_opus(ogg).expect("decodes");
    let ms = pcm.samples.len() as i64 * 1000 / pcm.sample_rate as i64;
    assert!(
        (ms - expect_ms).abs() <= 20,
        "decoded {ms} ms, expected {expect_ms}"
    );
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
    // The toy waits in a long-poll.
    let (tx, rx) = tokio::sync::oneshot::channel();
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
    // Give the poll time to be waiting (it answers at once if it is not, which the assertion below would catch only loosely).
    tokio::time::sleep(Duration::from_millis(300)).await;
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
    let r = c
        .post(hub.url("/toy/v1/recordings"))
        .header("content-type", "audio/wav")
        .body(vec![0u8; 5 << 20])
        .send()
        .await;
    if let Ok(r) = r {
        assert_eq!(r.status(), 413);
    }
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
