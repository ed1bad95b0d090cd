//! Static assets (CSS, scripts, icons, the toys' pictures) embedded in
//! the binary, the web app manifest ("Add to Home Screen" names the
//! household and uses the hub's icons) and the hub CA certificate download.

use actix_web::http::Method;
use actix_web::{HttpResponse, web};

use crate::error::{Error, Result};
use crate::http::{Access, Routes};
use crate::state::AppState;

/// Registers the routes of this file.
pub fn register(r: &mut Routes<'_>) {
    r.add(Method::GET, "/static/{name}", Access::Public, get_static);
    r.add(Method::GET, "/ca.crt", Access::Public, get_ca);
    r.add(
        Method::GET,
        "/manifest.webmanifest",
        Access::Public,
        get_manifest,
    );
}

/// The manifest's content type (the W3C Web App Manifest's own).
pub const MANIFEST_CONTENT_TYPE: &str = "application/manifest+json";

/// The embedded files: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/app.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/app.js"),
    ),
    (
        "recorder-worklet.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/recorder-worklet.js"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../static/icon.svg"),
    ),
    // The low-battery warning's icon.
    (
        "battery-low.svg",
        "image/svg+xml",
        include_bytes!("../../static/battery-low.svg"),
    ),
    // The toys' pictures (`character::Picture`), drawn for Hearth.
    (
        "toy-bear.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-bear.svg"),
    ),
    (
        "toy-bunny.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-bunny.svg"),
    ),
    (
        "toy-cat.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-cat.svg"),
    ),
    (
        "toy-dog.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-dog.svg"),
    ),
    (
        "toy-owl.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-owl.svg"),
    ),
    (
        "toy-fox.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-fox.svg"),
    ),
    (
        "toy-whale.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-whale.svg"),
    ),
    (
        "toy-dino.svg",
        "image/svg+xml",
        include_bytes!("../../static/toy-dino.svg"),
    ),
    // The app icons: the house drawn on the page colour with room around
    // it, so a launcher may crop them to any shape ("maskable"). Rendered
    // once from icon.svg in Chromium and committed.
    (
        "icon-192.png",
        "image/png",
        include_bytes!("../../static/icon-192.png"),
    ),
    (
        "icon-512.png",
        "image/png",
        include_bytes!("../../static/icon-512.png"),
    ),
];

async fn get_static(name: web::Path<String>) -> Result<HttpResponse> {
    let (_, ct, bytes) = FILES
        .iter()
        .find(|(n, _, _)| *n == name.as_str())
        .ok_or_else(|| Error::not_found("no such file"))?;
    Ok(HttpResponse::Ok()
        .content_type(*ct)
        .insert_header(("cache-control", "public, max-age=3600"))
        .body(*bytes))
}

/// The web app manifest: public, like the icons it names, since a phone
/// fetches it without the session cookie. Its name is the household's.
async fn get_manifest(state: web::Data<AppState>) -> Result<HttpResponse> {
    let household = crate::accounts::household_name(&state).await?;
    let body = serde_json::json!({
        "name": household,
        "short_name": "Hearth",
        "description": "Voice messages between your family and the children's toys, kept at home.",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "background_color": "#fbf8f4",
        "theme_color": "#fbf8f4",
        "icons": [
            {"src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml"},
            {"src": "/static/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any maskable"},
            {"src": "/static/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any maskable"},
        ],
    });
    Ok(HttpResponse::Ok()
        .content_type(MANIFEST_CONTENT_TYPE)
        .insert_header(("cache-control", "no-cache"))
        .body(body.to_string()))
}

async fn get_ca(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-x509-ca-cert")
        .insert_header((
            "content-disposition",
            "attachment; filename=\"hearth-ca.crt\"",
        ))
        .body(state.pki.ca_der())
}

#[cfg(test)]
mod tests {
    use super::FILES;
    use crate::character::Picture;

    #[test]
    fn every_picture_is_served() {
        for p in Picture::ALL {
            let name = format!("toy-{}.svg", p.as_str());
            let (_, ct, bytes) = FILES
                .iter()
                .find(|(n, _, _)| *n == name)
                .unwrap_or_else(|| panic!("{name} is embedded"));
            assert_eq!(*ct, "image/svg+xml");
            assert!(bytes.starts_with(b"<svg "), "{name} is an SVG");
            assert_eq!(p.src(), format!("/static/{name}"));
        }
    }
}
