//! The TXT rules of `docs/toy-protocol.md` section 1, applied to raw `key=value`
//! strings: building the hub's and a toy's TXT records, and checking the
//! records we receive.
//!
//! The parsers take the strings as they stand on the wire so that every rule
//! (at most 255 bytes each, case-insensitive keys, first of equal keys wins,
//! unknown keys ignored, UTF-8 values) is checked here, in one place, and can
//! be tested without a network. [`raw_entries`] turns what `mdns-sd` hands us
//! back into that form; its doc comment says what the crate has already
//! decided for us.
//!
//! **Invariant:** nothing here panics or allocates without bound on any input;
//! a property test feeds both parsers random and mutated entry lists.

use mdns_sd::TxtProperties;

use crate::domain::{Hex32, Invalid, ToyId};

use super::{API_PATH, ToyRecord};

/// Longest `key=value` string (RFC 6763 section 6.1: one length byte).
pub const MAX_ENTRY_BYTES: usize = 255;

/// Longest `model` value in bytes (`docs/toy-protocol.md` section 1).
pub const MAX_MODEL_BYTES: usize = 64;

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// The keys of one record after the generic rules: for each key we care
/// about, the raw value of its first occurrence (`None` inside when the key
/// stood alone, without `=`).
struct Entries<'a> {
    found: Vec<(&'static str, Option<&'a [u8]>)>,
}

impl<'a> Entries<'a> {
    /// Applies the generic rules to `entries`, keeping the first occurrence
    /// of each key in `wanted` (compared case-insensitively).
    fn collect(entries: &'a [Vec<u8>], wanted: &[&'static str]) -> Result<Self, Invalid> {
        let mut found: Vec<(&'static str, Option<&'a [u8]>)> = Vec::new();
        for entry in entries {
            if entry.len() > MAX_ENTRY_BYTES {
                return Err(invalid(format!(
                    "a TXT string is {} bytes long, more than the {MAX_ENTRY_BYTES} allowed",
                    entry.len()
                )));
            }
            let (key, value) = match entry.iter().position(|&b| b == b'=') {
                Some(i) => (&entry[..i], Some(&entry[i + 1..])),
                None => (&entry[..], None),
            };
            // RFC 6763 section 6.4: a string with an empty key (including the
            // empty string itself) is silently ignored.
            if key.is_empty() {
                continue;
            }
            let Some(name) = wanted
                .iter()
                .find(|w| w.as_bytes().eq_ignore_ascii_case(key))
            else {
                continue; // unknown key: ignored
            };
            if found.iter().any(|(k, _)| k == name) {
                continue; // a later duplicate: the first one wins
            }
            found.push((name, value));
        }
        Ok(Self { found })
    }

    /// The value of `key` as UTF-8 text: `Ok(None)` when the key is absent,
    /// an error when it has no value or its value is not UTF-8.
    fn text(&self, key: &'static str) -> Result<Option<&'a str>, Invalid> {
        let Some((_, value)) = self.found.iter().find(|(k, _)| *k == key) else {
            return Ok(None);
        };
        let value = value.ok_or_else(|| invalid(format!("TXT key `{key}` has no value")))?;
        std::str::from_utf8(value)
            .map(Some)
            .map_err(|_| invalid(format!("TXT key `{key}` is not valid UTF-8")))
    }

    fn required(&self, key: &'static str) -> Result<&'a str, Invalid> {
        self.text(key)?
            .ok_or_else(|| invalid(format!("TXT key `{key}` is missing")))
    }
}

fn check_version(entries: &Entries<'_>) -> Result<(), Invalid> {
    let v = entries.required("v")?;
    if v != "1" {
        return Err(invalid(format!(
            "TXT `v` is {v:?}, this hub speaks version 1 only"
        )));
    }
    Ok(())
}

/// Checks a toy's TXT record (`docs/toy-protocol.md` section 1).
///
/// `v`, `id` and `fp` are required; `v` must be `1`, `id` a valid toy id and
/// `fp` 64 hex characters. `model` (at most 64 bytes) and `paired` (`0` or
/// `1`) are optional and default to an empty model and not paired; when
/// present they must follow their rule too, since a value that breaks the
/// page means the record cannot be trusted to say what it seems to say.
/// Unknown keys are ignored whatever their value.
pub fn parse_toy_txt(entries: &[Vec<u8>]) -> Result<ToyRecord, Invalid> {
    let e = Entries::collect(entries, &["v", "id", "fp", "model", "paired"])?;
    check_version(&e)?;
    let toy_id = ToyId::parse(e.required("id")?)?;
    let fp = Hex32::parse("TXT `fp`", e.required("fp")?)?;
    let model = e.text("model")?.unwrap_or_default();
    if model.len() > MAX_MODEL_BYTES {
        return Err(invalid(format!(
            "TXT `model` is {} bytes long, more than the {MAX_MODEL_BYTES} allowed",
            model.len()
        )));
    }
    let paired = match e.text("paired")? {
        None | Some("0") => false,
        Some("1") => true,
        Some(other) => {
            return Err(invalid(format!("TXT `paired` is {other:?}, not 0 or 1")));
        }
    };
    Ok(ToyRecord {
        toy_id,
        model: model.to_owned(),
        fp,
        paired,
    })
}

/// Checks the hub's TXT record: `v` = `1`, `api` a path starting with `/`
/// (without control characters), `ca` 64 hex characters.
pub fn parse_hub_txt(entries: &[Vec<u8>]) -> Result<(String, Hex32), Invalid> {
    let e = Entries::collect(entries, &["v", "api", "ca"])?;
    check_version(&e)?;
    let api = e.required("api")?;
    if !api.starts_with('/') || api.chars().any(char::is_control) {
        return Err(invalid(format!("TXT `api` is {api:?}, not a path")));
    }
    let ca = Hex32::parse("TXT `ca`", e.required("ca")?)?;
    Ok((api.to_owned(), ca))
}

/// Rebuilds the raw `key=value` strings from what `mdns-sd` decoded.
///
/// Known gaps, decided by the crate before we see the record: a string whose
/// key is not UTF-8 has been dropped (we would ignore it as an unknown key
/// anyway); later duplicates of a key (compared case-insensitively) have
/// been dropped, which is the same first-wins rule we apply; a string can
/// never exceed 255 bytes on the wire. Everything else (key case, a key
/// without `=`, an empty value, a non-UTF-8 value) is kept as received.
pub fn raw_entries(props: &TxtProperties) -> Vec<Vec<u8>> {
    props
        .iter()
        .map(|p| {
            let mut s = p.key().as_bytes().to_vec();
            if let Some(v) = p.val() {
                s.push(b'=');
                s.extend_from_slice(v);
            }
            s
        })
        .collect()
}

/// The hub's TXT record as `(key, value)` pairs.
pub fn hub_txt(ca: &Hex32) -> Vec<(&'static str, String)> {
    vec![
        ("v", "1".to_owned()),
        ("api", API_PATH.to_owned()),
        ("ca", ca.to_hex()),
    ]
}

/// A toy's TXT record as `(key, value)` pairs.
pub fn toy_txt(
    toy_id: &ToyId,
    model: &str,
    fp: &Hex32,
    paired: bool,
) -> Vec<(&'static str, String)> {
    vec![
        ("v", "1".to_owned()),
        ("id", toy_id.as_str().to_owned()),
        ("model", model.to_owned()),
        ("fp", fp.to_hex()),
        ("paired", if paired { "1" } else { "0" }.to_owned()),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FP: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn raw(entries: &[&str]) -> Vec<Vec<u8>> {
        entries.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    fn good_toy() -> Vec<Vec<u8>> {
        let fp = format!("fp={FP}");
        raw(&[
            "v=1",
            "id=bear-3F2A",
            "model=hearth-toy 1.0",
            &fp,
            "paired=0",
        ])
    }

    fn err_of(entries: &[Vec<u8>]) -> String {
        match parse_toy_txt(entries) {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn a_good_toy_record_parses() {
        let r = parse_toy_txt(&good_toy()).unwrap();
        assert_eq!(r.toy_id.as_str(), "bear-3F2A");
        assert_eq!(r.model, "hearth-toy 1.0");
        assert_eq!(r.fp.to_hex(), FP);
        assert!(!r.paired);
    }

    #[test]
    fn each_required_toy_key_is_required() {
        for key in ["v=", "id=", "fp="] {
            let entries: Vec<_> = good_toy()
                .into_iter()
                .filter(|e| !e.starts_with(key.as_bytes()))
                .collect();
            let bare = key.trim_end_matches('=');
            assert!(err_of(&entries).contains(&format!("`{bare}` is missing")));
        }
    }

    #[test]
    fn optional_toy_keys_default() {
        let fp = format!("fp={FP}");
        let r = parse_toy_txt(&raw(&["v=1", "id=x", &fp])).unwrap();
        assert_eq!(r.model, "");
        assert!(!r.paired);
        let r = parse_toy_txt(&raw(&["v=1", "id=x", &fp, "paired=1", "model="])).unwrap();
        assert!(r.paired);
        assert_eq!(r.model, "");
    }

    #[test]
    fn version_must_be_one() {
        for v in ["v=2", "v=", "v=01", "v= 1", "v"] {
            let mut e = good_toy();
            e[0] = v.as_bytes().to_vec();
            parse_toy_txt(&e).unwrap_err();
        }
    }

    #[test]
    fn id_rules() {
        for id in [
            "id=".to_owned(),
            format!("id={}", "a".repeat(65)),
            "id=bear 3f2a".to_owned(),
            "id=bear/3f2a".to_owned(),
            "id=ours\u{e9}".to_owned(),
            "id".to_owned(),
        ] {
            let mut e = good_toy();
            e[1] = id.into_bytes();
            parse_toy_txt(&e).unwrap_err();
        }
        let mut e = good_toy();
        e[1] = format!("id={}", "a".repeat(64)).into_bytes();
        assert_eq!(parse_toy_txt(&e).unwrap().toy_id.as_str().len(), 64);
        e[1] = b"id=A.b_c-9".to_vec();
        parse_toy_txt(&e).unwrap();
    }

    #[test]
    fn fp_rules() {
        for fp in [
            format!("fp={}", &FP[..63]),
            format!("fp={FP}0"),
            format!("fp={}g", &FP[..63]),
            "fp=".to_owned(),
        ] {
            let mut e = good_toy();
            e[3] = fp.into_bytes();
            parse_toy_txt(&e).unwrap_err();
        }
        // Upper-case hex is accepted and comes out lower case.
        let mut e = good_toy();
        e[3] = format!("fp={}", FP.to_uppercase()).into_bytes();
        assert_eq!(parse_toy_txt(&e).unwrap().fp.to_hex(), FP);
    }

    #[test]
    fn first_of_equal_keys_wins_case_insensitively() {
        let mut e = good_toy();
        e.insert(0, b"ID=first".to_vec());
        e.push(b"Id=third".to_vec());
        assert_eq!(parse_toy_txt(&e).unwrap().toy_id.as_str(), "first");

        // A bad first value is not rescued by a good later one.
        let mut e = good_toy();
        e.insert(0, b"V=2".to_vec());
        parse_toy_txt(&e).unwrap_err();
    }

    #[test]
    fn keys_are_case_insensitive() {
        let fp = format!("FP={FP}");
        let r = parse_toy_txt(&raw(&["V=1", "iD=x", &fp, "Paired=1", "MODEL=m"])).unwrap();
        assert_eq!(r.toy_id.as_str(), "x");
        assert!(r.paired);
        assert_eq!(r.model, "m");
    }

    #[test]
    fn values_must_be_utf8() {
        let mut e = good_toy();
        e[2] = b"model=\xff\xfe".to_vec();
        assert!(err_of(&e).contains("UTF-8"));
        let mut e = good_toy();
        e[1] = b"id=\xc3".to_vec();
        assert!(err_of(&e).contains("UTF-8"));
    }

    #[test]
    fn strings_over_255_bytes_are_refused() {
        let mut e = good_toy();
        e.push(format!("x={}", "a".repeat(254)).into_bytes()); // 256 bytes
        assert!(err_of(&e).contains("255"));
        let mut e = good_toy();
        e.push(format!("x={}", "a".repeat(253)).into_bytes()); // exactly 255
        parse_toy_txt(&e).unwrap();
    }

    #[test]
    fn unknown_keys_and_empty_strings_are_ignored() {
        let mut e = good_toy();
        e.push(b"colour=\xff".to_vec());
        e.push(b"flag".to_vec());
        e.push(Vec::new());
        e.push(b"=orphan".to_vec());
        e.push(b"v2=1".to_vec());
        parse_toy_txt(&e).unwrap();
    }

    #[test]
    fn model_and_paired_rules() {
        let mut e = good_toy();
        e[2] = format!("model={}", "é".repeat(32)).into_bytes(); // 64 bytes
        parse_toy_txt(&e).unwrap();
        e[2] = format!("model={}", "m".repeat(65)).into_bytes();
        assert!(err_of(&e).contains("model"));
        for p in ["paired=yes", "paired=", "paired=2", "paired"] {
            let mut e = good_toy();
            e[4] = p.as_bytes().to_vec();
            parse_toy_txt(&e).unwrap_err();
        }
    }

    fn good_hub() -> Vec<Vec<u8>> {
        let ca = format!("ca={FP}");
        raw(&["v=1", "api=/toy/v1", &ca])
    }

    #[test]
    fn hub_txt_rules() {
        let (api, ca) = parse_hub_txt(&good_hub()).unwrap();
        assert_eq!(api, "/toy/v1");
        assert_eq!(ca.to_hex(), FP);

        for key in ["v=", "api=", "ca="] {
            let entries: Vec<_> = good_hub()
                .into_iter()
                .filter(|e| !e.starts_with(key.as_bytes()))
                .collect();
            parse_hub_txt(&entries).unwrap_err();
        }
        for (i, bad) in [
            (0, "v=2"),
            (1, "api=toy/v1"),
            (1, "api="),
            (1, "api=/a\nb"),
            (2, "ca=abc"),
            (2, "ca"),
        ] {
            let mut e = good_hub();
            e[i] = bad.as_bytes().to_vec();
            parse_hub_txt(&e).unwrap_err();
        }
        let mut e = good_hub();
        e.insert(0, b"API=/first".to_vec());
        e.push(b"extra=\xff".to_vec());
        assert_eq!(parse_hub_txt(&e).unwrap().0, "/first");
    }

    #[test]
    fn what_we_advertise_parses() {
        let id = ToyId::parse("bear-3f2a").unwrap();
        let fp = Hex32::parse("fp", FP).unwrap();
        let props: Vec<Vec<u8>> = toy_txt(&id, "hearth-toy 1.0", &fp, true)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect();
        let r = parse_toy_txt(&props).unwrap();
        assert_eq!(r.toy_id, id);
        assert!(r.paired);
        let props: Vec<Vec<u8>> = hub_txt(&fp)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}").into_bytes())
            .collect();
        assert_eq!(parse_hub_txt(&props).unwrap(), (API_PATH.to_owned(), fp));
    }

    #[test]
    fn raw_entries_keeps_what_the_crate_kept() {
        let props: TxtProperties = b"\x03v=1\x04ID=a\x04id=b\x04flag\x05m=\xff\xfe\xfd"
            .as_slice()
            .into();
        assert_eq!(
            raw_entries(&props),
            vec![
                b"v=1".to_vec(),
                b"ID=a".to_vec(),
                b"flag".to_vec(),
                b"m=\xff\xfe\xfd".to_vec()
            ]
        );
    }

    fn entry() -> impl Strategy<Value = Vec<u8>> {
        let key = prop_oneof![
            Just(b"v".to_vec()),
            Just(b"V".to_vec()),
            Just(b"id".to_vec()),
            Just(b"Id".to_vec()),
            Just(b"fp".to_vec()),
            Just(b"model".to_vec()),
            Just(b"paired".to_vec()),
            Just(b"api".to_vec()),
            Just(b"CA".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        let value = prop_oneof![
            Just(b"1".to_vec()),
            Just(FP.as_bytes().to_vec()),
            Just(b"/toy/v1".to_vec()),
            "[A-Za-z0-9._-]{0,70}".prop_map(String::into_bytes),
            ".{0,80}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..300),
        ];
        prop_oneof![
            (key, proptest::option::of(value)).prop_map(|(mut k, v)| {
                if let Some(v) = v {
                    k.push(b'=');
                    k.extend(v);
                }
                k
            }),
            proptest::collection::vec(any::<u8>(), 0..300),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn random_entry_lists_never_panic(entries in proptest::collection::vec(entry(), 0..12)) {
            let _ = parse_toy_txt(&entries);
            let _ = parse_hub_txt(&entries);
        }

        #[test]
        fn mutated_good_records_never_panic(
            which in 0usize..5,
            pos in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            cut in any::<prop::sample::Index>(),
            hub in any::<bool>(),
        ) {
            let mut e = if hub { good_hub() } else { good_toy() };
            let i = which % e.len();
            if !e[i].is_empty() {
                let p = pos.index(e[i].len());
                e[i][p] = byte;
                let c = cut.index(e[i].len() + 1);
                if byte % 3 == 0 { e[i].truncate(c); }
            }
            let toy = parse_toy_txt(&e);
            let hubr = parse_hub_txt(&e);
            // Whatever got through still satisfies the rules.
            if let Ok(r) = toy {
                // The id listed is the record's first `id` value (keys
                // compare case-insensitively), and that raw value meets
                // docs/toy-protocol.md section 1 as written there, checked here
                // without the hub's own parser.
                let raw = e.iter().find_map(|s| {
                    let (k, v) = s.split_at(s.iter().position(|b| *b == b'=')?);
                    k.eq_ignore_ascii_case(b"id").then(|| v[1..].to_vec())
                });
                prop_assert_eq!(raw.as_deref(), Some(r.toy_id.as_str().as_bytes()));
                let id = r.toy_id.as_str();
                prop_assert!((1..=64).contains(&id.len()));
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)));
                prop_assert!(r.model.len() <= MAX_MODEL_BYTES);
            }
            if let Ok((api, _)) = hubr {
                prop_assert!(api.starts_with('/'));
            }
        }
    }
}
