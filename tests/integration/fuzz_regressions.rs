//! Replays the fuzzers' seed corpora and every input they found
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same
//! entry points (`hearth::fuzzing`), so CI catches a regression without
//! running a fuzzer. See docs/fuzzing.md.

use std::path::{Path, PathBuf};

use serde_json::json;

/// A fuzz entry point.
type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("wav", hearth::fuzzing::wav),
    ("ogg_opus", hearth::fuzzing::ogg_opus),
    ("csr", hearth::fuzzing::csr),
    ("mdns_txt", hearth::fuzzing::mdns_txt),
    ("json_bodies", hearth::fuzzing::json_bodies),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.is_file());
    v.sort();
    v
}

#[test]
fn fuzz_corpora_and_findings_never_panic() {
    let mut replayed = 0;
    for (target, run) in TARGETS {
        let seeds = files(&fuzz_dir().join("corpus").join(target));
        assert!(!seeds.is_empty(), "{target} has a seed corpus");
        for f in seeds
            .iter()
            .chain(files(&fuzz_dir().join("regressions").join(target)).iter())
        {
            let data = match std::fs::read(f) {
                Ok(d) => d,
                // A fuzzer running on this tree replaces corpus files as it
                // goes (minimising); one gone since the listing is no input.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("read {}: {e}", f.display()),
            };
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", f.display());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} fuzz inputs");
}

/// Writes the seed corpora: valid inputs of each kind, made by the hub's
/// own code. Run once with `--ignored` when the formats change.
#[test]
#[ignore]
fn write_seed_corpora() {
    let put = |target: &str, name: &str, data: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), data).expect("write seed");
    };
    put("wav", "tone-8k", &crate::messages::tone_wav(0.2, 8_000));
    put("wav", "tone-48k", &crate::messages::tone_wav(0.1, 48_000));
    let pcm = hearth::audio::Pcm {
        sample_rate: 48_000,
        samples: (0..4800).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect(),
    };
    put(
        "ogg_opus",
        "tone",
        &hearth::audio::encode_only(&pcm).expect("encode"),
    );
    let (_, csr_pem) = hearth::pki::make_toy_key_and_csr("bear-3f2a").expect("csr");
    put("csr", "p256.pem", csr_pem.as_bytes());
    let mut rdata = Vec::new();
    for kv in [
        "v=1",
        "id=bear-3f2a",
        "model=hearth-toy 1.0",
        &format!("fp={}", "ab".repeat(32)),
        "paired=0",
    ] {
        rdata.push(kv.len() as u8);
        rdata.extend_from_slice(kv.as_bytes());
    }
    put("mdns_txt", "toy", &rdata);
    let mut hub = Vec::new();
    for kv in ["v=1", "api=/toy/v1", &format!("ca={}", "cd".repeat(32))] {
        hub.push(kv.len() as u8);
        hub.extend_from_slice(kv.as_bytes());
    }
    put("mdns_txt", "hub", &hub);
    let pair = json!({"toy_id": "bear-3f2a", "name": "Bear", "model": "hearth-toy 1.0",
        "csr": csr_pem, "commitment": "ab".repeat(32)});
    put("json_bodies", "pair", pair.to_string().as_bytes());
    let login = json!({"username": "mum", "password": "plum violet kettle harbour"});
    put("json_bodies", "login", login.to_string().as_bytes());
    let setup = json!({"setup_code": "123456", "household": "Fernhill", "username": "mum", "password": "plum violet kettle harbour"});
    put("json_bodies", "setup", setup.to_string().as_bytes());
    put(
        "json_bodies",
        "reveal",
        json!({"toy_nonce": "11".repeat(32)}).to_string().as_bytes(),
    );
}
