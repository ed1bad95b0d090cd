//! Per-member state (issue 15), through real HTTPS with two parents and a
//! relative: each member's own heard state and unread counts (Dad playing
//! a child's recording leaves Mum's count alone), mark all heard per toy
//! and overall, `event: unread` on the member's own stream only,
//! `heard_by_me` in lists and events, a relative's counts for granted toys
//! only, display names on messages, and a toy's child ("Mia’s Grizzly").

use serde_json::{Value, json};

use crate::contract::Events;
use crate::harness::{self, Hub, Parent, TestToy, recording_from};
use crate::messages::tone_wav;

fn as_user(hub: &Hub, token: String) -> Parent {
    Parent {
        client: hub.anon(),
        token,
        base: hub.origin(),
    }
}

/// Plays a message as `who` (what the page's Play button fetches).
async fn play(who: &Parent, id: &str) {
    let r = who.get(&format!("/api/v1/messages/{id}/audio")).await;
    assert_eq!(r.status(), 200);
    assert!(!r.bytes().await.expect("audio").is_empty());
}

/// A member's counts as `(total, [(toy_id, unread)])`.
async fn counts(who: &Parent) -> (i64, Vec<(String, i64)>) {
    let v = who.json("/api/v1/unread").await;
    let toys = v["toys"]
        .as_array()
        .expect("toys")
        .iter()
        .map(|t| {
            (
                t["toy_id"].as_str().expect("id").to_owned(),
                t["unread"].as_i64().expect("n"),
            )
        })
        .collect();
    (v["total"].as_i64().expect("total"), toys)
}

fn toys(list: &[(&str, i64)]) -> Vec<(String, i64)> {
    list.iter().map(|(t, n)| ((*t).to_owned(), *n)).collect()
}

/// The `heard_by_me` of message `id` in a member's list of `toy`.
async fn heard_by_me(who: &Parent, toy: &str, id: &str) -> Value {
    let list = who.json(&format!("/api/v1/messages?toy={toy}")).await;
    list["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["id"] == id)
        .map(|m| m["heard_by_me"].clone())
        .unwrap_or_else(|| panic!("{id} not listed: {list}"))
}

/// Mum (admin), Dad (parent), Gran (relative of the fox), a bear and a fox.
async fn family() -> (Hub, Parent, Parent, Parent, TestToy, TestToy) {
    let mut f = harness::family(&["bear", "fox"], "fox").await;
    let fox = f.toys.remove(1);
    let bear = f.toys.remove(0);
    (f.hub, f.mum, f.dad, f.gran, bear, fox)
}

#[actix_web::test]
async fn each_member_hears_for_themselves_and_marks_all_heard() {
    let (hub, mum, dad, gran, bear, fox) = family().await;
    for who in [&mum, &dad] {
        assert_eq!(counts(who).await, (0, toys(&[("bear", 0), ("fox", 0)])));
    }
    let mut mum_events = Events::open(&hub, &mum.token).await;
    let mut dad_events = Events::open(&hub, &dad.token).await;

    let b1 = recording_from(&hub, &bear).await;
    let b2 = recording_from(&hub, &bear).await;
    let f1 = recording_from(&hub, &fox).await;
    // A new recording reaches each stream as unheard by that member.
    let ev = dad_events
        .event(10, "message", |m| m["id"] == f1.as_str())
        .await;
    assert_eq!(ev["heard_by_me"], false, "{ev}");
    for who in [&mum, &dad] {
        assert_eq!(counts(who).await, (3, toys(&[("bear", 2), ("fox", 1)])));
    }
    assert_eq!(counts(&gran).await, (1, toys(&[("fox", 1)])));

    // Dad plays one: his count drops, Mum's and Gran's do not.
    play(&dad, &b1).await;
    let ev = dad_events
        .event(10, "unread", |d| d["toy_id"] == "bear")
        .await;
    assert_eq!(ev, json!({"toy_id": "bear"}));
    assert_eq!(counts(&dad).await, (2, toys(&[("bear", 1), ("fox", 1)])));
    assert_eq!(counts(&mum).await, (3, toys(&[("bear", 2), ("fox", 1)])));
    assert_eq!(counts(&gran).await, (1, toys(&[("fox", 1)])));
    assert_eq!(heard_by_me(&dad, "bear", &b1).await, true);
    assert_eq!(heard_by_me(&mum, "bear", &b1).await, false);
    // The household's state moved on (the toy protocol's and the existing
    // API's "heard"), and Mum's stream shows it still unheard by her.
    let ev = mum_events
        .event(10, "message", |m| {
            m["id"] == b1.as_str() && m["state"] == "heard"
        })
        .await;
    assert_eq!(
        (&ev["state"], &ev["heard_by_me"]),
        (&json!("heard"), &json!(false))
    );
    // Playing again changes nothing.
    play(&dad, &b1).await;
    assert_eq!(counts(&dad).await.0, 2);

    // Mum's home page lists all three as new; Dad's only the two left.
    let page = |who: &Parent| {
        let who = as_user(&hub, who.token.clone());
        async move { who.get("/").await.text().await.expect("html") }
    };
    let (mum_home, dad_home) = (page(&mum).await, page(&dad).await);
    for id in [&b1, &b2, &f1] {
        assert!(
            mum_home.contains(&format!("msg-{id}")),
            "Mum's home lists {id}"
        );
    }
    assert!(!dad_home.contains(&format!("msg-{b1}")), "Dad heard {b1}");
    assert!(dad_home.contains(&format!("msg-{b2}")));

    // Mum marks the bear heard: her bear count is 0, the fox stays, Dad's
    // counts are untouched; her stream says so, Dad's does not.
    let r = mum.post("/api/v1/toys/bear/heard", json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["marked"], 2, "{v}");
    assert_eq!(v["total"], 1, "{v}");
    mum_events
        .event(10, "unread", |d| d["toy_id"] == "bear")
        .await;
    assert_eq!(counts(&mum).await, (1, toys(&[("bear", 0), ("fox", 1)])));
    assert_eq!(counts(&dad).await, (2, toys(&[("bear", 1), ("fox", 1)])));
    assert_eq!(heard_by_me(&mum, "bear", &b2).await, true);
    // Marking is not playing: b2's household state is still "received".
    let list = dad.json("/api/v1/messages?toy=bear").await;
    let b2_row = list["messages"]
        .as_array()
        .expect("list")
        .iter()
        .find(|m| m["id"] == b2.as_str())
        .cloned()
        .expect("b2");
    assert_eq!(b2_row["state"], "received");

    // Dad marks everything: both toys, only his.
    let r = dad.post("/api/v1/heard", json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        (v["marked"].as_i64(), v["total"].as_i64()),
        (Some(2), Some(0))
    );
    let ev = dad_events.event(10, "unread", |_| true).await;
    assert_eq!(ev, json!({"toy_id": null}));
    assert_eq!(counts(&dad).await, (0, toys(&[("bear", 0), ("fox", 0)])));
    assert_eq!(counts(&mum).await.0, 1);
    assert_eq!(counts(&gran).await.0, 1);

    // Unknown toys are 404; a second mark-all marks nothing.
    assert_eq!(
        mum.post("/api/v1/toys/nope/heard", json!({}))
            .await
            .status(),
        404
    );
    let v: Value = dad
        .post("/api/v1/heard", json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["marked"], 0);

    // Dad's per-member events never reached Mum: her stream's unread
    // events are only about the bear she marked.
    let f2 = recording_from(&hub, &fox).await;
    mum_events
        .event(10, "message", |m| m["id"] == f2.as_str())
        .await;
    let unread_blocks: Vec<&str> = mum_events
        .seen
        .split("event: ")
        .filter(|b| b.starts_with("unread"))
        .collect();
    assert_eq!(unread_blocks.len(), 1, "{}", mum_events.seen);
    assert_eq!(counts(&dad).await, (1, toys(&[("bear", 0), ("fox", 1)])));
}

#[actix_web::test]
async fn a_relative_counts_only_granted_toys_and_cannot_mark_others() {
    let (hub, _mum, _dad, gran, bear, fox) = family().await;
    let b = recording_from(&hub, &bear).await;
    recording_from(&hub, &fox).await;
    let mut gran_events = Events::open(&hub, &gran.token).await;
    assert_eq!(counts(&gran).await, (1, toys(&[("fox", 1)])));
    // The bear is not hers: not found, for its recording and for marking.
    assert_eq!(
        gran.post("/api/v1/toys/bear/heard", json!({}))
            .await
            .status(),
        404
    );
    assert_eq!(
        gran.get(&format!("/api/v1/messages/{b}/audio"))
            .await
            .status(),
        404
    );
    // Marking everything marks her fox only; the bear's recording stays
    // unheard for her (it is not hers to hear) and uncounted.
    let v: Value = gran
        .post("/api/v1/heard", json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["marked"], 1, "{v}");
    assert_eq!(v["toys"], json!([{"toy_id": "fox", "unread": 0}]));
    // Her personal event (no toy) reaches her stream although it names no toy of hers.
    let ev = gran_events.event(10, "unread", |_| true).await;
    assert_eq!(ev, json!({"toy_id": null}));
    assert_eq!(counts(&gran).await, (0, toys(&[("fox", 0)])));
}

#[actix_web::test]
async fn a_members_display_name_signs_their_messages() {
    let hub = Hub::start().await;
    let mum = hub.parent().await;
    let mut bear = TestToy::new("bear");
    bear.pair(&hub, &mum).await;
    assert_eq!(mum.json("/api/v1/me").await["display_name"], "mum");
    let r = mum
        .client
        .post(hub.url("/api/v1/toys/bear/messages"))
        .bearer_auth(&mum.token)
        .header("content-type", "audio/wav")
        .body(tone_wav(0.5, 8000))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let from = |v: Value| v["messages"][0]["from"].as_str().map(str::to_owned);
    assert_eq!(
        from(mum.json("/api/v1/messages").await).as_deref(),
        Some("mum")
    );

    for bad in [
        json!({"display_name": "  "}),
        json!({"display_name": "x".repeat(65)}),
    ] {
        let r = mum.patch("/api/v1/me", bad).await;
        assert_eq!(r.status(), 422);
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"]["code"], "invalid_name", "{e}");
    }
    let r = mum.patch("/api/v1/me", json!({"nick": "Mum"})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        mum.json("/api/v1/me").await["display_name"],
        "mum",
        "nothing changed"
    );

    let r = mum
        .patch("/api/v1/me", json!({"display_name": "  Mum "}))
        .await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.expect("json");
    assert_eq!(
        me,
        json!({"username": "mum", "display_name": "Mum", "role": "admin"})
    );
    // The message sent before shows the new name, in the list, on the
    // toy's inbox and on the page's bubble and menu.
    assert_eq!(
        from(mum.json("/api/v1/messages").await).as_deref(),
        Some("Mum")
    );
    let inbox = bear.inbox(&hub).await;
    assert_eq!(inbox[0]["from"], "Mum", "{inbox:?}");
    let html = mum.get("/toys/bear").await.text().await.expect("html");
    assert!(
        html.contains("<strong>Mum</strong>"),
        "the bubble is signed Mum"
    );
    assert!(!html.contains("<strong>mum</strong>"));
    // Sign-in still uses the login name.
    hub.login("mum", crate::harness::PASSWORD).await;
}

#[actix_web::test]
async fn a_toy_gets_its_childs_name_in_lists_and_on_its_page() {
    let (hub, mum, _dad, gran, _bear, _fox) = family().await;
    let r = mum
        .patch("/api/v1/toys/bear", json!({"name": "Grizzly"}))
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.expect("json");
    assert_eq!(
        (&t["child"], &t["title"]),
        (&Value::Null, &json!("Grizzly"))
    );

    let long = "m".repeat(65);
    for bad in ["\u{7}", long.as_str()] {
        let r = mum.patch("/api/v1/toys/bear", json!({"child": bad})).await;
        assert_eq!(r.status(), 422);
        let e: Value = r.json().await.expect("json");
        assert_eq!(e["error"]["code"], "invalid_name", "{e}");
    }
    // A relative may not name the child, even of her own toy.
    assert_eq!(
        gran.patch("/api/v1/toys/fox", json!({"child": "Mia"}))
            .await
            .status(),
        403
    );

    let r = mum
        .patch("/api/v1/toys/bear", json!({"child": " Mia "}))
        .await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.expect("json");
    assert_eq!(
        (&t["child"], &t["title"]),
        (&json!("Mia"), &json!("Mia\u{2019}s Grizzly"))
    );
    let listed = mum.json("/api/v1/toys").await;
    let bear = listed["paired"]
        .as_array()
        .expect("paired")
        .iter()
        .find(|t| t["toy_id"] == "bear")
        .cloned()
        .expect("bear");
    assert_eq!(bear["title"], "Mia\u{2019}s Grizzly");
    for page in ["/", "/toys", "/toys/bear"] {
        let html = mum.get(page).await.text().await.expect("html");
        assert!(
            html.contains("Mia\u{2019}s Grizzly"),
            "{page} shows the child's name"
        );
    }
    let ledger = hub.ledger().await;
    assert!(
        ledger
            .iter()
            .any(|e| e.action.as_str() == "toy_renamed" && e.detail.contains("child \"Mia\"")),
        "the ledger says the child was named"
    );
    // "" removes it.
    let r = mum.patch("/api/v1/toys/bear", json!({"child": ""})).await;
    let t: Value = r.json().await.expect("json");
    assert_eq!(
        (&t["child"], &t["title"]),
        (&Value::Null, &json!("Grizzly"))
    );
}
