//! Toys as characters (issue 15, sections 4 and 5), through real HTTPS
//! with an admin, a parent and a relative: a toy's picture (a default that
//! differs between toys, chosen by parents and admins, seen but not
//! changed by relatives, served as SVG, on every page), the low-battery
//! warning of a toy that reports 12 % (and the 20 % boundary), and quiet
//! hours with the injected clock: a message sent at 20:00 is held until
//! 07:00, one sent at 12:00 is delivered at once, a waiting long-poll
//! wakes when the hours end, and bad settings get precise errors.
//!
//! Local times are computed here with `jiff` in the system's time zone,
//! the zone the hub documents for quiet hours (`character::local_zone`).

use std::time::{Duration, Instant};

use hearth::clock::Clock;
use serde_json::{Value, json};

use crate::contract::Events;
use crate::harness::{self, Hub, Parent, TestToy};
use crate::messages::{send_wav, tone_wav};

/// The eight pictures, as docs/api.md lists them.
const PICTURES: [&str; 8] = ["bear", "bunny", "cat", "dog", "owl", "fox", "whale", "dino"];

/// The paired toy `id` as `who` sees it in `GET /api/v1/toys`.
async fn toy_json(who: &Parent, id: &str) -> Value {
    let v = who.json("/api/v1/toys").await;
    v["paired"]
        .as_array()
        .expect("paired")
        .iter()
        .find(|t| t["toy_id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not listed: {v}"))
}

/// A refused `PATCH`: its status and error code and message.
async fn refused(who: &Parent, path: &str, body: Value) -> (u16, String, String) {
    let r = who.patch(path, body).await;
    let status = r.status().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_owned(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// Mum (admin), Dad (parent), Gran (relative of the bear), a paired bear.
async fn family() -> (Hub, Parent, Parent, Parent, TestToy) {
    let mut f = harness::family(&["bear"], "bear").await;
    let bear = f.toys.remove(0);
    (f.hub, f.mum, f.dad, f.gran, bear)
}

#[actix_web::test]
async fn parents_choose_a_picture_and_relatives_only_see_it() {
    let (hub, mum, dad, gran, toy) = family().await;

    // A default from the built-in set, the same on every look; toys differ
    // (at least among these ids).
    let first = toy_json(&mum, "bear").await["picture"].clone();
    assert!(
        PICTURES.contains(&first.as_str().expect("a picture")),
        "{first}"
    );
    assert_eq!(toy_json(&dad, "bear").await["picture"], first);
    let mut defaults = std::collections::HashSet::new();
    for id in ["toy-1", "toy-2", "toy-3", "toy-4"] {
        let mut t = TestToy::new(id);
        t.pair(&hub, &mum).await;
        defaults.insert(toy_json(&mum, id).await["picture"].to_string());
    }
    assert!(
        defaults.len() > 1,
        "toys get different pictures: {defaults:?}"
    );

    // A parent and an admin choose; the answer and the list say so.
    let r = dad
        .patch("/api/v1/toys/bear", json!({"picture": "whale"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["picture"], "whale");
    let r = mum
        .patch("/api/v1/toys/bear", json!({"picture": "owl"}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(toy_json(&dad, "bear").await["picture"], "owl");

    // Outside the set: a precise error naming the choices; nothing changes.
    let (status, code, message) =
        refused(&mum, "/api/v1/toys/bear", json!({"picture": "unicorn"})).await;
    assert_eq!((status, code.as_str()), (422, "invalid_picture"));
    assert!(
        message.contains("bear, bunny, cat, dog, owl, fox, whale, dino")
            && message.contains("unicorn"),
        "{message}"
    );
    assert_eq!(toy_json(&mum, "bear").await["picture"], "owl");

    // A relative sees it but may not change it, not even for her own toy.
    assert_eq!(toy_json(&gran, "bear").await["picture"], "owl");
    let (status, code, _) = refused(&gran, "/api/v1/toys/bear", json!({"picture": "cat"})).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    assert_eq!(toy_json(&mum, "bear").await["picture"], "owl");

    // Every page shows the drawing (the conversation on the child's
    // recordings, not on a parent's message); only parents get the picker.
    let id = crate::harness::recording_from(&hub, &toy).await;
    for who in [&mum, &gran] {
        let html = who.get("/toys/bear").await.text().await.expect("html");
        let bubble = &html[html.find(&format!("id=\"msg-{id}\"")).expect("the bubble")..];
        let bubble = &bubble[..bubble.find("</li>").expect("its end")];
        assert!(
            bubble.contains("class=\"bubble-pic\" src=\"/static/toy-owl.svg\""),
            "the recording's bubble shows the owl: {bubble}"
        );
    }
    for page in ["/", "/toys", "/toys/bear"] {
        for who in [&mum, &gran] {
            let html = who.get(page).await.text().await.expect("html");
            assert!(
                html.contains("src=\"/static/toy-owl.svg\" alt=\"Owl\""),
                "{page} shows the owl"
            );
        }
    }
    let html = mum.get("/toys/bear").await.text().await.expect("html");
    assert!(
        html.contains("name=\"picture\" value=\"owl\" checked"),
        "the owl is chosen"
    );
    assert_eq!(html.matches("name=\"picture\"").count(), 8, "eight choices");
    let html = gran.get("/toys/bear").await.text().await.expect("html");
    assert!(!html.contains("data-picture"), "no picker for a relative");

    // The drawings are served, as SVG, to anyone (pages' images).
    for p in PICTURES {
        let r = hub
            .anon()
            .get(hub.url(&format!("/static/toy-{p}.svg")))
            .send()
            .await
            .expect("svg");
        assert_eq!(r.status(), 200, "{p}");
        assert_eq!(r.headers()["content-type"], "image/svg+xml");
        let body = r.text().await.expect("body");
        assert!(body.starts_with("<svg ") && body.contains("viewBox"), "{p}");
    }

    let ledger = hub.ledger().await;
    assert!(
        ledger
            .iter()
            .any(|e| e.action.as_str() == "toy_settings_changed"
                && e.detail == "picture owl"
                && e.actor.as_deref() == Some("mum")),
        "the ledger records the choice: {:?}",
        ledger
            .iter()
            .map(|e| (e.action.as_str(), &e.detail))
            .collect::<Vec<_>>()
    );
}

#[actix_web::test]
async fn a_toy_at_12_percent_is_shown_as_needing_charging() {
    let (hub, mum, _dad, gran, bear) = family().await;
    let r = mum
        .patch("/api/v1/toys/bear", json!({"child": "Mia"}))
        .await;
    assert_eq!(r.status(), 200);
    let report = |b: u8| {
        let (client, url) = (bear.client(&hub), hub.url("/toy/v1/status"));
        async move {
            let r = client
                .post(url)
                .json(&json!({"battery": b}))
                .send()
                .await
                .expect("status");
            assert_eq!(r.status(), 204, "status {b}");
        }
    };
    let mut events = Events::open(&hub, &mum.token).await;

    // 21 %: no warning.
    report(21).await;
    let t = toy_json(&mum, "bear").await;
    assert_eq!(
        (&t["battery_low"], &t["battery_warning"]),
        (&json!(false), &Value::Null)
    );
    let html = mum.get("/").await.text().await.expect("html");
    assert!(!html.contains("needs charging"), "no warning at 21 %");

    // 12 %: the warning, in the toy JSON and on the three pages (not
    // hidden), with the icon's text alternative; the pages learn it live.
    report(12).await;
    events
        .event(10, "toy", |d| {
            d["change"] == "status" && d["toy_id"] == "bear"
        })
        .await;
    let words = "Mia\u{2019}s Bear needs charging: battery 12\u{a0}%";
    for who in [&mum, &gran] {
        let t = toy_json(who, "bear").await;
        assert_eq!(t["battery"], 12);
        assert_eq!(t["battery_low"], true);
        assert_eq!(t["battery_warning"], words);
    }
    for page in ["/", "/toys", "/toys/bear"] {
        let html = mum.get(page).await.text().await.expect("html");
        let at = html
            .find(words)
            .unwrap_or_else(|| panic!("{page} warns: {html}"));
        let element = &html[html[..at].rfind("data-battery-warning").expect("element")..at];
        assert!(!element.contains("hidden"), "{page}: the warning shows");
        assert!(
            element.contains("alt=\"Warning:\""),
            "{page}: icon and text"
        );
    }

    // 20 % is still low (the boundary), and charging clears it.
    report(20).await;
    assert_eq!(toy_json(&mum, "bear").await["battery_low"], true);
    report(80).await;
    let t = toy_json(&mum, "bear").await;
    assert_eq!(
        (&t["battery_low"], &t["battery_warning"]),
        (&json!(false), &Value::Null)
    );
}

/// Moves the hub's clock forward to the next local `hh:mm:ss` in the
/// system's time zone (at most a day ahead).
pub(crate) fn advance_to(hub: &Hub, hh: i8, mm: i8, ss: i8) {
    let zone = jiff::tz::TimeZone::system();
    let now = jiff::Timestamp::from_second(hub.clock.unix())
        .expect("now")
        .to_zoned(zone.clone());
    let at = |d: jiff::civil::Date| {
        d.at(hh, mm, ss, 0)
            .to_zoned(zone.clone())
            .expect("local time")
            .timestamp()
            .as_second()
    };
    let mut target = at(now.date());
    if target <= now.timestamp().as_second() {
        target = at(now.date().tomorrow().expect("tomorrow"));
    }
    hub.clock.advance(time::Duration::seconds(
        target - now.timestamp().as_second(),
    ));
}

/// The ids in the toy's inbox (no long-poll).
async fn inbox(hub: &Hub, toy: &TestToy) -> Vec<String> {
    let r = toy
        .client(hub)
        .get(hub.url("/toy/v1/inbox"))
        .send()
        .await
        .expect("inbox");
    assert_eq!(r.status(), 200);
    ids(&r.json::<Value>().await.expect("json"))
}

fn ids(v: &Value) -> Vec<String> {
    v["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Sends a message to the bear; returns the answer.
async fn send(hub: &Hub, who: &Parent) -> Value {
    let r = send_wav(hub, who, tone_wav(1.0, 16_000)).await;
    assert_eq!(r.status(), 201);
    r.json().await.expect("json")
}

#[actix_web::test]
async fn quiet_hours_hold_messages_until_they_end() {
    let (hub, mum, _dad, gran, bear) = family().await;
    advance_to(&hub, 12, 0, 0);
    let r = mum
        .patch(
            "/api/v1/toys/bear",
            json!({"quiet_hours": {"on": true, "start": "19:30", "end": "07:00"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.expect("json");
    assert_eq!(
        t["quiet_hours"],
        json!({"on": true, "start": "19:30", "end": "07:00"})
    );
    assert_eq!(t["quiet_now"], false, "12:00 is not quiet");

    // Sent at 12:00: delivered at once.
    let noon = send(&hub, &mum).await;
    assert_eq!(noon["quiet"], Value::Null, "{noon}");
    assert_eq!(
        inbox(&hub, &bear).await,
        vec![noon["id"].as_str().expect("id").to_owned()]
    );
    let r = bear
        .client(&hub)
        .get(hub.url(&format!(
            "/toy/v1/messages/{}/audio",
            noon["id"].as_str().expect("id")
        )))
        .send()
        .await
        .expect("audio");
    assert_eq!(r.status(), 200);
    let r = bear
        .client(&hub)
        .post(hub.url(&format!(
            "/toy/v1/messages/{}/played",
            noon["id"].as_str().expect("id")
        )))
        .send()
        .await
        .expect("played");
    assert_eq!(r.status(), 204);
    assert!(inbox(&hub, &bear).await.is_empty(), "played, so gone");

    // Sent at 20:00: held, and the sender is told until when.
    advance_to(&hub, 20, 0, 0);
    let evening = send(&hub, &mum).await;
    let id = evening["id"].as_str().expect("id").to_owned();
    assert_eq!(
        evening["quiet"]["note"], "Bear is in quiet hours until 07:00; it will hear this then.",
        "{evening}"
    );
    let t = toy_json(&mum, "bear").await;
    assert_eq!(t["quiet_now"], true);
    assert_eq!(t["quiet_until"], evening["quiet"]["until"]);
    assert!(inbox(&hub, &bear).await.is_empty(), "held at 20:00");
    let html = mum.get("/toys/bear").await.text().await.expect("html");
    assert!(
        html.contains("Bear is in quiet hours until 07:00: messages sent now wait until then."),
        "the toy page says so"
    );
    // A relative's message is held the same way (the rule is the toy's).
    let gran_msg = send(&hub, &gran).await;
    assert!(gran_msg["quiet"]["note"].is_string());
    // The parents still see it, waiting.
    let list = mum.json("/api/v1/messages?toy=bear").await;
    assert_eq!(list["messages"][0]["state"], "queued");

    // 06:59: still held. 07:00: delivered, both.
    advance_to(&hub, 6, 59, 0);
    assert!(inbox(&hub, &bear).await.is_empty(), "held at 06:59");
    advance_to(&hub, 7, 0, 0);
    let got = inbox(&hub, &bear).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&id));
    assert_eq!(toy_json(&mum, "bear").await["quiet_now"], false);

    // Switched off, the hours are kept, and nothing is held.
    let r = mum
        .patch("/api/v1/toys/bear", json!({"quiet_hours": {"on": false}}))
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.expect("json");
    assert_eq!(
        t["quiet_hours"],
        json!({"on": false, "start": "19:30", "end": "07:00"})
    );
    advance_to(&hub, 21, 0, 0);
    let late = send(&hub, &mum).await;
    assert_eq!(late["quiet"], Value::Null);
    assert!(
        inbox(&hub, &bear)
            .await
            .contains(&late["id"].as_str().expect("id").to_owned())
    );

    let ledger = hub.ledger().await;
    for detail in [
        "quiet hours 19:30 to 07:00",
        "quiet hours off (kept: 19:30 to 07:00)",
    ] {
        assert!(
            ledger
                .iter()
                .any(|e| e.action.as_str() == "toy_settings_changed" && e.detail == detail),
            "ledger: {detail}"
        );
    }
}

#[actix_web::test]
async fn a_waiting_long_poll_wakes_when_quiet_hours_end() {
    let hub = Hub::start().await;
    let mum = hub.parent().await;
    let mut bear = TestToy::new("bear");
    bear.pair(&hub, &mum).await;
    advance_to(&hub, 20, 0, 58);
    let r = mum
        .patch(
            "/api/v1/toys/bear",
            json!({"quiet_hours": {"on": true, "start": "19:30", "end": "20:01"}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sent = send(&hub, &mum).await;
    assert!(sent["quiet"]["note"].is_string(), "{sent}");

    let started = Instant::now();
    let poll = {
        let (client, url) = (bear.client(&hub), hub.url("/toy/v1/inbox?wait=30"));
        tokio::spawn(async move {
            let r = client.get(url).send().await.expect("long-poll");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.expect("json")
        })
    };
    // The long-poll has reached the hub when its call is recorded
    // (`last_seen` moves to the hub's 20:00:58).
    let now = hearth::clock::rfc3339(hub.clock.unix());
    crate::harness::eventually(10, "the long-poll to arrive", || {
        let mum = &mum;
        let now = now.clone();
        async move { (toy_json(mum, "bear").await["last_seen"] == now.as_str()).then_some(()) }
    })
    .await;
    // The hours end two seconds later; nothing else happens (no new
    // message, no wake-up): the long-poll must look again by itself.
    hub.clock.advance(time::Duration::seconds(2));
    let v = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("the long-poll answers when the hours end")
        .expect("task");
    assert_eq!(ids(&v), vec![sent["id"].as_str().expect("id").to_owned()]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "answered at the end of the quiet hours, not at its 30 s deadline ({:?})",
        started.elapsed()
    );
}

#[actix_web::test]
async fn quiet_hours_settings_are_checked() {
    let (_hub, mum, _dad, gran, _bear) = family().await;
    let path = "/api/v1/toys/bear";
    let q = |v: Value| json!({"quiet_hours": v});
    // None set yet: switching on needs times.
    let (s, code, msg) = refused(&mum, path, q(json!({"on": true}))).await;
    assert_eq!((s, code.as_str()), (422, "invalid_quiet_hours"));
    assert_eq!(
        msg,
        "quiet hours need a start and an end, like 19:30 and 07:00"
    );
    for (body, what, bad) in [
        (
            json!({"on": true, "start": "25:00", "end": "07:00"}),
            "start",
            "25:00",
        ),
        (
            json!({"on": true, "start": "19:30", "end": "7am"}),
            "end",
            "7am",
        ),
        (
            json!({"on": true, "start": "19:30:00", "end": "07:00"}),
            "start",
            "19:30:00",
        ),
        (
            json!({"on": true, "start": "19:30", "end": "07:60"}),
            "end",
            "07:60",
        ),
    ] {
        let (s, code, msg) = refused(&mum, path, q(body)).await;
        assert_eq!((s, code.as_str()), (422, "invalid_quiet_hours"));
        assert_eq!(
            msg,
            format!(
                "{what} is a time of day as HH:MM from 00:00 to 23:59, like 19:30; \"{bad}\" is not"
            )
        );
    }
    let (s, code, msg) = refused(
        &mum,
        path,
        q(json!({"on": true, "start": "07:00", "end": "07:00"})),
    )
    .await;
    assert_eq!((s, code.as_str()), (422, "invalid_quiet_hours"));
    assert_eq!(
        msg,
        "quiet hours must end at another time than they start (both are 07:00)"
    );
    // Malformed bodies: `on` missing, an unknown field.
    for body in [
        q(json!({"start": "19:30", "end": "07:00"})),
        q(json!({"on": true, "start": "19:30", "end": "07:00", "days": 5})),
    ] {
        let (s, code, _) = refused(&mum, path, body).await;
        assert_eq!((s, code.as_str()), (400, "invalid_json"));
    }
    // A refused change stores nothing (also not a name sent with it).
    let (s, _, _) = refused(
        &mum,
        path,
        json!({"name": "Grizzly", "quiet_hours": {"on": true, "start": "1:00", "end": "07:00"}}),
    )
    .await;
    assert_eq!(s, 422);
    let t = toy_json(&mum, "bear").await;
    assert_eq!(
        (&t["quiet_hours"], &t["name"]),
        (&Value::Null, &json!("Bear"))
    );
    // A relative may not set them.
    let (s, code, _) = refused(
        &gran,
        path,
        q(json!({"on": true, "start": "19:30", "end": "07:00"})),
    )
    .await;
    assert_eq!((s, code.as_str()), (403, "forbidden"));
    assert_eq!(toy_json(&mum, "bear").await["quiet_hours"], Value::Null);
    // Off by default: nothing is held.
    assert_eq!(toy_json(&mum, "bear").await["quiet_now"], false);
}
