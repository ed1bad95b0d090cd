//! Issue 15's polish over real HTTP: the web app manifest and its icons
//! (public, right content types, HEAD like GET), error pages that read as
//! pages of the site (a plain headline, the technical words behind
//! "Details", the menu when signed in; JSON errors unchanged), the session
//! list's devices in words, and the admin's first-run checklist ticked
//! from the hub's own state.

use serde_json::{Value, json};

use crate::harness::{Hub, TestToy};

/// The width and height of a PNG, read from its header.
fn png_size(b: &[u8]) -> (u32, u32) {
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    assert_eq!(&b[12..16], b"IHDR", "the PNG starts with its header");
    let n = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    (n(16), n(20))
}

#[actix_web::test]
async fn the_manifest_names_the_household_and_its_icons_load() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let route = hearth::app::route_table()
        .into_iter()
        .find(|r| r.path == "/manifest.webmanifest")
        .expect("the manifest is in the route table");
    assert_eq!(route.access, hearth::http::Access::Public);
    // Anyone on the LAN fetches it: a phone asks without the cookie.
    let anon = hub.anon();
    let r = anon
        .get(hub.url("/manifest.webmanifest"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/manifest+json");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("manifest-src 'self'"),
        "the CSP lets pages load it: {csp}"
    );
    let m: Value = r.json().await.expect("the manifest is JSON");
    let household = parent.json("/api/v1/household").await["name"]
        .as_str()
        .expect("name")
        .to_owned();
    assert_eq!(m["name"], household.as_str());
    assert_eq!(m["start_url"], "/");
    assert_eq!(m["display"], "standalone");
    let icons = m["icons"].as_array().expect("icons");
    let mut sizes = Vec::new();
    for icon in icons {
        let src = icon["src"].as_str().expect("src");
        let r = anon.get(hub.url(src)).send().await.expect("icon");
        assert_eq!(r.status(), 200, "{src}");
        let ct = r.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(ct, icon["type"].as_str().expect("type"), "{src}");
        let body = r.bytes().await.expect("body");
        if ct == "image/png" {
            let (w, h) = png_size(&body);
            assert_eq!(
                format!("{w}x{h}"),
                icon["sizes"].as_str().expect("sizes"),
                "{src} is the size the manifest says"
            );
            sizes.push(w);
        } else {
            assert!(body.starts_with(b"<svg"), "{src} is an SVG");
        }
    }
    sizes.sort_unstable();
    assert_eq!(sizes, [192, 512], "PNG icons of 192 and 512 pixels");
    // HEAD answers like GET, without a body.
    let head = anon
        .head(hub.url("/manifest.webmanifest"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], "application/manifest+json");
    assert!(head.bytes().await.expect("body").is_empty());
    // Every page links it, and the phone's home-screen icon.
    let page = anon
        .get(hub.url("/login"))
        .send()
        .await
        .expect("login page")
        .text()
        .await
        .expect("html");
    assert!(page.contains(r#"<link rel="manifest" href="/manifest.webmanifest">"#));
    assert!(page.contains(r#"<link rel="apple-touch-icon" href="/static/icon-192.png">"#));
    assert!(page.contains(r#"<meta name="color-scheme" content="light dark">"#));
}

#[actix_web::test]
async fn error_pages_speak_plainly_inside_the_layout() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    // Not signed in: the plain headline, no menu, the details folded away.
    let r = hub.anon().get(hub.url("/nope")).send().await.expect("get");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let html = r.text().await.expect("html");
    assert!(html.contains("<h1>This page does not exist</h1>"), "{html}");
    let details = html.find("<details>").expect("a Details section");
    let technical = html
        .find("404 Not Found: nothing here: GET /nope")
        .expect("the technical words are kept");
    assert!(technical > details, "the technical words sit in Details");
    assert!(
        !html[..details].contains("Not Found"),
        "no log-like words before Details"
    );
    assert!(!html.contains("data-logout"), "no menu without a session");
    // Signed in: the same page inside the member's layout, menu included,
    // with the household's name.
    let r = parent.get("/toys/nobody-0000").await;
    assert_eq!(r.status(), 404);
    let html = r.text().await.expect("html");
    assert!(html.contains("<h1>This page does not exist</h1>"), "{html}");
    assert!(html.contains("data-logout"), "the menu is there: {html}");
    assert!(
        html.contains(r#"<a href="/toys""#),
        "the menu links the toys"
    );
    assert!(
        html.contains(r#"class="tabbar""#),
        "the phone's tab bar too"
    );
    let household = parent.json("/api/v1/household").await["name"]
        .as_str()
        .expect("name")
        .to_owned();
    assert!(
        html.contains(&format!(
            "<title>This page does not exist · {household}</title>"
        )),
        "{html}"
    );
    // Error pages are not cached.
    let r = parent.get("/toys/nobody-0000").await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    // HEAD of an error page: the same status, the length of the page it
    // would be (whose details name the method: one letter more), no body.
    let len = |r: &reqwest::Response| -> usize {
        r.headers()["content-length"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("number")
    };
    let get = hub.anon().get(hub.url("/nope")).send().await.expect("get");
    let head = hub
        .anon()
        .head(hub.url("/nope"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 404);
    assert_eq!(len(&head), len(&get) + "HEAD".len() - "GET".len());
    assert!(head.bytes().await.expect("body").is_empty());
    // The JSON APIs answer as before.
    let r = parent.get("/api/v1/nope").await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(
        v["error"]["message"], "nothing here: GET /api/v1/nope",
        "{v}"
    );
}

#[actix_web::test]
async fn sessions_name_the_browser_in_words() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let firefox = "Mozilla/5.0 (Android 14; Mobile; rv:128.0) Gecko/128.0 Firefox/128.0";
    let r = hub
        .anon()
        .post(hub.url("/api/v1/login"))
        .header("user-agent", firefox)
        .json(&json!({"username": "mum", "password": crate::harness::PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    let list = parent.json("/api/v1/sessions").await;
    let sessions = list["sessions"].as_array().expect("sessions");
    let phone = sessions
        .iter()
        .find(|s| s["user_agent"] == firefox)
        .expect("the phone's session is listed with its raw user agent");
    assert_eq!(phone["device"], "Firefox on Android");
    assert!(
        sessions.iter().all(|s| s["device"].is_string()),
        "every session has a device: {list}"
    );
}

/// The home page's checklist as (present, done count), read from the HTML.
async fn checklist(parent: &crate::harness::Parent) -> Option<usize> {
    let r = parent.get("/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    if !html.contains(r#"id="checklist""#) {
        return None;
    }
    let done = html
        .split("data-checklist-count>")
        .nth(1)
        .and_then(|s| s.split(" of 4").next())
        .and_then(|n| n.trim().parse().ok())
        .expect("the count");
    Some(done)
}

#[actix_web::test]
async fn the_first_run_checklist_ticks_from_real_state_and_goes_away() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    assert_eq!(
        checklist(&parent).await,
        Some(0),
        "nothing done after setup"
    );
    // Bad marks are refused precisely; nothing is ticked.
    let r = parent
        .post("/api/v1/me/checklist", json!({"mark": "toy_paired"}))
        .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_json");
    assert_eq!(checklist(&parent).await, Some(0));
    // Each item from its own state.
    let mut toy = TestToy::new("bear-look");
    toy.pair(&hub, &parent).await;
    assert_eq!(checklist(&parent).await, Some(1), "a toy is paired");
    let r = parent
        .post("/api/v1/invites", json!({"role": "parent", "toys": []}))
        .await;
    assert_eq!(r.status(), 201, "invite");
    assert_eq!(checklist(&parent).await, Some(2), "the family is invited");
    let r = parent
        .post(
            "/api/v1/backups",
            json!({"passphrase": "lantern pebble orchard drum"}),
        )
        .await;
    assert_eq!(r.status(), 200, "backup");
    let _ = r.bytes().await.expect("the backup arrives");
    assert_eq!(checklist(&parent).await, Some(3), "a backup was made");
    let r = parent
        .post(
            "/api/v1/me/checklist",
            json!({"mark": "certificate_trusted"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    // All four done: the list is gone, and stays gone even when the toy
    // that ticked an item is removed.
    assert_eq!(checklist(&parent).await, None, "all done: no list");
    assert_eq!(parent.delete("/api/v1/toys/bear-look").await.status(), 204);
    assert_eq!(checklist(&parent).await, None, "it does not come back");
}

#[actix_web::test]
async fn the_checklist_can_be_put_away() {
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    assert_eq!(checklist(&parent).await, Some(0));
    let r = parent
        .post("/api/v1/me/checklist", json!({"mark": "dismissed"}))
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(checklist(&parent).await, None, "put away");
    // Stored: a new session of the same member does not see it either.
    let token = hub.login("mum", crate::harness::PASSWORD).await;
    let again = crate::harness::Parent {
        client: hub.anon(),
        token,
        base: hub.origin(),
    };
    assert_eq!(checklist(&again).await, None);
}
