//! The player page (`p/HASH/index.html`, RELAY.md section 4): one
//! self-contained HTML file with its script and style inline, allowed by
//! hash in its own Content-Security-Policy. It is built once from
//! `player/index.html`, `player.js` and `player.css`; `HASH`, the first 16
//! hex digits of the page's SHA-256, names it in the mailbox, so a newer
//! hub never breaks an older link.

use std::sync::OnceLock;

use base64::Engine;
use sha2::{Digest, Sha256};

const TEMPLATE: &str = include_str!("player/index.html");
const SCRIPT: &str = include_str!("player/player.js");
const STYLE: &str = include_str!("player/player.css");

/// The built page and its key under the prefix.
#[derive(Debug)]
pub struct Page {
    /// The HTML.
    pub html: String,
    /// `p/HASH/index.html`.
    pub key: String,
}

fn csp_hash(text: &str) -> String {
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

fn build() -> Page {
    let csp = format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; media-src blob:; base-uri 'none'; form-action 'none'",
        csp_hash(SCRIPT),
        csp_hash(STYLE)
    );
    let html = TEMPLATE
        .replace("{{CSP}}", &csp)
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT);
    let hash = hex::encode(Sha256::digest(html.as_bytes()));
    Page {
        key: format!("p/{}/index.html", &hash[..16]),
        html,
    }
}

/// The player page of this hub version.
pub fn page() -> &'static Page {
    static PAGE: OnceLock<Page> = OnceLock::new();
    PAGE.get_or_init(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_self_contained_and_named_by_its_hash() {
        let p = page();
        assert!(!p.html.contains("{{"), "every placeholder filled");
        assert!(p.html.contains(&csp_hash(SCRIPT)));
        assert!(!p.html.contains("src=\"http"), "no external asset");
        let hash = hex::encode(Sha256::digest(p.html.as_bytes()));
        assert_eq!(p.key, format!("p/{}/index.html", &hash[..16]));
    }
}
