//! The parents' pages in a real browser: `tests/browser/e2e.mjs` drives
//! Chromium (fake microphone fed from a generated WAV) against a real hub:
//! sign in, pair a toy from the toys page, record and send a message, the
//! toy fetches and plays it (ticks update live), the toy records (the open
//! pages update live), and axe finds no accessibility violation on any page.
//! Skipped with a note when node, Chromium or the npm packages are missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{self, Hub, TestToy};

/// A 16-bit mono PCM WAV of `secs` seconds: a voice-like tone (a 180 Hz
/// fundamental with harmonics, syllable-rate amplitude changes).
fn speech_like_wav(rate: u32, secs: f64) -> Vec<u8> {
    let n = (f64::from(rate) * secs) as u32;
    let mut out = Vec::with_capacity(44 + n as usize * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + n * 2).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(n * 2).to_le_bytes());
    let tau = std::f64::consts::TAU;
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let f0 = 180.0 + 25.0 * (tau * 0.7 * t).sin();
        let voice = (tau * f0 * t).sin()
            + 0.5 * (tau * 2.0 * f0 * t).sin()
            + 0.25 * (tau * 3.0 * f0 * t).sin();
        let envelope = 0.55 + 0.45 * (tau * 4.0 * t).sin();
        let s = (0.3 * voice * envelope).clamp(-1.0, 1.0);
        out.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes());
    }
    out
}

fn missing_tool(root: &Path) -> Option<String> {
    if !harness::have("node")
        || !harness::run_with_timeout(
            std::process::Command::new("node").arg("--version"),
            30,
            None,
        )
        .status
        .success()
    {
        return Some("node is not installed".into());
    }
    if !Path::new("/usr/bin/chromium").exists() {
        return Some("/usr/bin/chromium is not installed".into());
    }
    if !root
        .join("tests/browser/node_modules/playwright-core")
        .exists()
        || !root
            .join("tests/browser/node_modules/@axe-core/playwright")
            .exists()
    {
        return Some("tests/browser/node_modules is missing (run npm ci in tests/browser)".into());
    }
    None
}

#[actix_web::test]
async fn browser_end_to_end() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if let Some(why) = missing_tool(&root) {
        println!("skipped: {why}");
        return;
    }
    let hub = Hub::start().await;
    let parent = hub.parent().await;
    let mut toy = TestToy::new("bear-3f2a");
    toy.pair(&hub, &parent).await;
    // A second toy waits for its code, to be confirmed on the toys page.
    let mut fox = TestToy::new("fox-9c1e");
    assert_eq!(fox.request(&hub).await, 201);
    assert_eq!(fox.reveal(&hub).await, 200);

    let files = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let p = files.path().join(name);
        std::fs::write(&p, bytes).expect("write a test file");
        p
    };
    let cert = write(
        "toy.crt",
        toy.cert_pem.as_deref().expect("paired").as_bytes(),
    );
    let key = write("toy.key", toy.key_pem.as_bytes());
    let ca = write("ca.crt", hub.ca_pem.as_bytes());
    let wav = write("voice.wav", &speech_like_wav(48_000, 3.0));
    let audio_src = std::fs::read_to_string(root.join("src/audio/mod.rs")).unwrap_or_default();
    let real_audio = !audio_src.contains("Placeholder");

    let mut cmd = tokio::process::Command::new("node");
    cmd.arg("tests/browser/e2e.mjs")
        .current_dir(&root)
        .env("HUB_URL", hub.origin())
        .env("USERNAME", "mum")
        .env("PASSWORD", harness::PASSWORD)
        .env("TOY_ID", &toy.toy_id)
        .env("TOY_CERT", &cert)
        .env("TOY_KEY", &key)
        .env("CA_FILE", &ca)
        .env("FAKE_WAV", &wav)
        .env("PAIR_ID", &fox.pairing_id)
        .env("PAIR_CODE", fox.code())
        .env("EXPECT_REAL_AUDIO", if real_audio { "1" } else { "0" })
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
        .await
        .expect("the browser test finishes within 4 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "tests/browser/e2e.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // The browser confirmed the second toy's code.
    let (_, v) = fox.poll(&hub).await;
    assert_eq!(v["status"], "approved", "the toys page paired the fox");
}
