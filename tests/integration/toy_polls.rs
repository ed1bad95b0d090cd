//! Issue 9: a toy certificate cannot park any number of long-polls. With
//! two of its long-polls parked, a third answers the oldest at once (an
//! empty list the toy asks again), and the two that stay get the next
//! message.

use std::time::Duration;

use serde_json::Value;

use crate::harness::Hub;
use crate::messages::{paired, send_wav, tone_wav};

#[actix_web::test]
async fn a_toy_keeps_at_most_two_long_polls_parked() {
    let hub = Hub::start().await;
    let (parent, toy) = paired(&hub).await;
    let toy_client = toy.client(&hub);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..3 {
        let (c, url, tx) = (
            toy_client.clone(),
            hub.url("/toy/v1/inbox?wait=60"),
            tx.clone(),
        );
        actix_web::rt::spawn(async move {
            let r = c.get(url).send().await.expect("inbox");
            let status = r.status().as_u16();
            let v: Value = r.json().await.expect("json");
            let _ = tx.send((n, status, v));
        });
    }
    let (_, status, first) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("one of three parked long-polls is answered at once")
        .expect("answer");
    assert_eq!(status, 200);
    assert_eq!(
        first["messages"].as_array().map(Vec::len),
        Some(0),
        "{first}"
    );
    assert!(rx.try_recv().is_err(), "the other two stay parked");
    let r = send_wav(&hub, &parent, tone_wav(1.0, 16_000)).await;
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.expect("json")["id"].clone();
    for _ in 0..2 {
        let (_, status, v) = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("the two parked long-polls get the message")
            .expect("answer");
        assert_eq!(status, 200);
        assert_eq!(v["messages"][0]["id"], id, "{v}");
    }
}
