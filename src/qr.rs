//! QR codes drawn on the hub as SVG (the `qrcode` crate, SVG renderer
//! only): the join link of an invitation, so a relative's phone can open
//! it without typing. No image library, no third-party service.

/// The SVG of a QR code holding `text`, ready to place in a page: no XML
/// declaration, `role="img"` with `label` for screen readers, and its own
/// white quiet zone so phones read it on any background.
pub fn svg(text: &str, label: &str) -> Result<String, qrcode::types::QrError> {
    let code = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)?;
    let drawn = code
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let body = drawn
        .split_once("?>")
        .map_or(drawn.as_str(), |(_, rest)| rest);
    let label = label
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;");
    Ok(body.replacen(
        "<svg ",
        &format!("<svg role=\"img\" aria-label=\"{label}\" "),
        1,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_an_svg_with_a_label_and_no_declaration() {
        let s =
            super::svg("https://hearth.local/join?code=1234-5678", "Join \"link\"").expect("fits");
        assert!(s.starts_with("<svg role=\"img\" aria-label=\"Join &quot;link&quot;\" "));
        assert!(s.contains("<path"), "{s}");
        assert!(!s.contains("<?xml"));
        assert!(super::svg(&"x".repeat(5000), "too long").is_err());
    }
}
