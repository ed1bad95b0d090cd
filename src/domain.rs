//! Newtypes and rules of the Hearth domain: identifiers, names, codes and
//! message states.
//!
//! Everything that comes from outside (a request body, a TXT record, a
//! command-line argument) is parsed into one of these types at the edge, so
//! the rest of the code never holds an unchecked `String` where a type says
//! more.
//!
//! **Architecture Invariant:** this module does no I/O and reads no clock.

use std::fmt;

use sha2::{Digest, Sha256};

/// Why a value was refused; the text is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// True for the characters allowed in toy ids and idempotency keys:
/// `A-Z a-z 0-9 . _ -` (`docs/toy-protocol.md` sections 1 and 4).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn parse_token(what: &str, s: &str) -> Result<String, Invalid> {
    if s.is_empty() || s.len() > 64 {
        return Err(invalid(format!("{what} must be 1 to 64 characters long")));
    }
    if !s.chars().all(is_token_char) {
        return Err(invalid(format!(
            "{what} may only contain the characters A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(s.to_owned())
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The checked value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

string_newtype!(
    /// A toy's stable id: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    ToyId
);

impl ToyId {
    /// Checks a toy id against `docs/toy-protocol.md` section 1.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        parse_token("a toy id", s).map(Self)
    }
}

string_newtype!(
    /// An `Idempotency-Key` header value: 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    IdempotencyKey
);

impl IdempotencyKey {
    /// Checks an idempotency key against `docs/toy-protocol.md` section 4.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        parse_token("Idempotency-Key", s).map(Self)
    }
}

string_newtype!(
    /// A login name: 1 to 64 characters, lowercase letters, digits, `.`, `_`, `-`.
    Username
);

impl Username {
    /// Parses a username; upper case is folded to lower case so that
    /// `Mum` and `mum` are the same account.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim().to_ascii_lowercase();
        if s.is_empty() || s.len() > 64 {
            return Err(invalid("a username must be 1 to 64 characters long"));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                "a username may only contain letters a-z, digits and . _ -",
            ));
        }
        Ok(Self(s))
    }
}

string_newtype!(
    /// A name shown to people: a household, a toy, a child. 1 to 64
    /// characters after trimming, no control characters.
    DisplayName
);

impl DisplayName {
    /// Longest display name, in characters.
    pub const MAX_CHARS: usize = 64;

    /// Trims and checks a display name.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.is_empty() {
            return Err(invalid("a name must not be empty"));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(invalid(format!(
                "a name must be at most {} characters long",
                Self::MAX_CHARS
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(invalid("a name must not contain control characters"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The name cut to at most `max` bytes at a character boundary (mDNS
    /// instance names are at most 63 bytes, `docs/toy-protocol.md` section 1).
    pub fn truncated_bytes(&self, max: usize) -> &str {
        let mut end = self.0.len().min(max);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        &self.0[..end]
    }
}

/// A 32-byte value sent as 64 hex characters: nonces, commitments,
/// fingerprints. Either case is accepted on input; output is lowercase.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hex32(pub [u8; 32]);

impl Hex32 {
    /// Parses exactly 64 hex characters.
    pub fn parse(what: &str, s: &str) -> Result<Self, Invalid> {
        if s.len() != 64 {
            return Err(invalid(format!("{what} must be 64 hex characters")));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| invalid(format!("{what} must be 64 hex characters")))?;
        Ok(Self(out))
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// SHA-256 of `data`.
    pub fn sha256(data: &[u8]) -> Self {
        Self(Sha256::digest(data).into())
    }
}

impl fmt::Debug for Hex32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex32({})", self.to_hex())
    }
}

/// A six-digit pairing code (`docs/toy-protocol.md` section 3).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PairingCode([u8; 6]);

impl PairingCode {
    /// Parses a code typed by a parent: exactly six ASCII digits (spaces
    /// around it are forgiven).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        let bytes = s.as_bytes();
        if bytes.len() != 6 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(invalid(
                "the pairing code is the 6 digits the toy announced",
            ));
        }
        let mut out = [0u8; 6];
        out.copy_from_slice(bytes);
        Ok(Self(out))
    }

    /// Computes the code both sides derive (`docs/toy-protocol.md` section 3, step 3).
    pub fn compute(
        ca_der: &[u8],
        toy_spki_der: &[u8],
        toy_nonce: &[u8; 32],
        hub_nonce: &[u8; 32],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"hearth-pair-v1");
        h.update(ca_der);
        h.update(toy_spki_der);
        h.update(toy_nonce);
        h.update(hub_nonce);
        let digest = h.finalize();
        let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 1_000_000;
        let text = format!("{n:06}");
        let mut out = [0u8; 6];
        out.copy_from_slice(text.as_bytes());
        Self(out)
    }

    /// Compares two codes in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }

    /// The six digits.
    pub fn as_str(&self) -> &str {
        // The bytes are ASCII digits by construction.
        std::str::from_utf8(&self.0).unwrap_or("??????")
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A code is a secret while the pairing is open; never print it in debug output.
        f.write_str("PairingCode(******)")
    }
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From a parent (or relative) to a toy.
    ToToy,
    /// A child's recording from a toy to the household.
    FromToy,
}

impl Direction {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ToToy => "to_toy",
            Self::FromToy => "from_toy",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "to_toy" => Ok(Self::ToToy),
            "from_toy" => Ok(Self::FromToy),
            _ => Err(invalid(format!("unknown direction {s:?}"))),
        }
    }
}

/// Life of a message: `queued → delivered → played` towards a toy,
/// `received → heard` from a toy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Stored, not yet fetched by the toy.
    Queued,
    /// The toy fetched the audio.
    Delivered,
    /// The toy reported it played the message.
    Played,
    /// A child's recording, not yet opened by a parent.
    Received,
    /// A parent opened the recording.
    Heard,
}

impl MessageState {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::Played => "played",
            Self::Received => "received",
            Self::Heard => "heard",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Ok(match s {
            "queued" => Self::Queued,
            "delivered" => Self::Delivered,
            "played" => Self::Played,
            "received" => Self::Received,
            "heard" => Self::Heard,
            _ => return Err(invalid(format!("unknown message state {s:?}"))),
        })
    }

    /// The order of states along their path, so a state never moves back
    /// (a late `audio` fetch must not undo `played`).
    pub fn rank(self) -> u8 {
        match self {
            Self::Queued | Self::Received => 0,
            Self::Delivered => 1,
            Self::Heard | Self::Played => 2,
        }
    }
}

/// What a household member may do (DESIGN.md, roles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May send to the toys an admin allows.
    Relative,
    /// May send to and hear from every toy, pair and rename toys.
    Parent,
    /// Everything.
    Admin,
}

impl Role {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relative => "relative",
            Self::Parent => "parent",
            Self::Admin => "admin",
        }
    }

    /// Parses the stored or typed form.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "relative" => Ok(Self::Relative),
            "parent" => Ok(Self::Parent),
            "admin" => Ok(Self::Admin),
            _ => Err(invalid("a role is admin, parent or relative")),
        }
    }
}

macro_rules! row_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);
    };
}

row_id!(
    /// A household member's row id.
    UserId
);
row_id!(
    /// A session's row id (shown to its member to end it).
    SessionId
);
row_id!(
    /// A paired toy's row id (not its own `ToyId`).
    ToyRowId
);
row_id!(
    /// A message's row id (orders messages; its public id is another).
    MessageRowId
);

/// How a session was opened: a browser cookie (CSRF applies) or an API
/// bearer token. A token is accepted only the way it was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// The `/login` form's cookie.
    Cookie,
    /// `POST /api/v1/login`'s token.
    Bearer,
}

impl SessionKind {
    /// The stored and wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Bearer => "bearer",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        match s {
            "cookie" => Ok(Self::Cookie),
            "bearer" => Ok(Self::Bearer),
            _ => Err(invalid("a session kind is cookie or bearer")),
        }
    }
}

/// Whose `Idempotency-Key`s a key is looked up among: one parent's, or one
/// toy's (by row id), so two senders never replay each other's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyScope {
    /// A household member's uploads.
    User(UserId),
    /// A toy's recordings.
    Toy(ToyRowId),
}

impl IdempotencyScope {
    /// The stored form: `user:<row id>` or `toy:<row id>`.
    pub fn key(self) -> String {
        match self {
            Self::User(id) => format!("user:{}", id.0),
            Self::Toy(id) => format!("toy:{}", id.0),
        }
    }
}

/// True for addresses of the home network: loopback, private (RFC 1918),
/// link-local, unique-local IPv6 (and IPv4-mapped forms of those). Clients
/// outside it are refused (`http::guard`), and so is an MQTT broker.
pub fn on_home_network(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return on_home_network(IpAddr::V4(v4));
            }
            let seg0 = v6.segments()[0];
            v6.is_loopback()
                || (seg0 & 0xfe00) == 0xfc00 // fc00::/7 unique local
                || (seg0 & 0xffc0) == 0xfe80 // fe80::/10 link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabularies_keep_their_stored_forms() {
        for k in [SessionKind::Cookie, SessionKind::Bearer] {
            assert_eq!(SessionKind::parse(k.as_str()), Ok(k));
        }
        assert!(SessionKind::parse("token").is_err());
        assert_eq!(IdempotencyScope::User(UserId(3)).key(), "user:3");
        assert_eq!(IdempotencyScope::Toy(ToyRowId(4)).key(), "toy:4");
    }

    #[test]
    fn pairing_code_matches_protocol_test_vector() {
        let ca: Vec<u8> = (0x00..=0x0f).collect();
        let key: Vec<u8> = (0x64..=0x83).collect();
        assert_eq!(key.len(), 32);
        let code = PairingCode::compute(&ca, &key, &[0x11; 32], &[0x22; 32]);
        assert_eq!(code.as_str(), "880298");
        let mut h = Sha256::new();
        h.update(b"hearth-pair-v1");
        h.update(&ca);
        h.update(&key);
        h.update([0x11; 32]);
        h.update([0x22; 32]);
        assert_eq!(hex::encode(&h.finalize()[..4]), "b7933e6a");
    }

    #[test]
    fn commitment_matches_protocol_test_vector() {
        assert_eq!(
            Hex32::sha256(&[0x11; 32]).to_hex(),
            "02d449a31fbb267c8f352e9968a79e3e5fc95c1bbeaa502fd6454ebde5a4bedc"
        );
    }

    #[test]
    fn toy_id_rules() {
        assert!(ToyId::parse("bear-3f2a").is_ok());
        assert!(ToyId::parse("A.b_c-9").is_ok());
        assert!(ToyId::parse(&"x".repeat(64)).is_ok());
        assert!(ToyId::parse(&"x".repeat(65)).is_err());
        assert!(ToyId::parse("").is_err());
        assert!(ToyId::parse("bear 3f2a").is_err());
        assert!(ToyId::parse("bär").is_err());
        assert!(ToyId::parse("a/b").is_err());
    }

    #[test]
    fn hex32_accepts_either_case_and_rejects_bad_length() {
        let upper = "02D449A31FBB267C8F352E9968A79E3E5FC95C1BBEAA502FD6454EBDE5A4BEDC";
        let h = Hex32::parse("commitment", upper).expect("upper-case hex is accepted");
        assert_eq!(h.to_hex(), upper.to_ascii_lowercase());
        assert!(Hex32::parse("commitment", &upper[..62]).is_err());
        assert!(Hex32::parse("commitment", &"zz".repeat(32)).is_err());
    }

    #[test]
    fn pairing_code_parse_requires_six_digits() {
        assert!(PairingCode::parse("123456").is_ok());
        assert!(PairingCode::parse(" 123456 ").is_ok());
        assert!(PairingCode::parse("12345").is_err());
        assert!(PairingCode::parse("1234567").is_err());
        assert!(PairingCode::parse("12345a").is_err());
        assert!(PairingCode::parse("１２３４５６").is_err());
        let a = PairingCode::parse("000001").expect("valid");
        assert!(a.ct_eq(&PairingCode::parse("000001").expect("valid")));
        assert!(!a.ct_eq(&PairingCode::parse("000002").expect("valid")));
    }

    #[test]
    fn display_name_truncates_at_char_boundary() {
        let n = DisplayName::parse(&"é".repeat(40)).expect("40 chars is fine");
        let cut = n.truncated_bytes(63);
        assert!(cut.len() <= 63);
        assert_eq!(cut.chars().count(), 31);
        assert!(DisplayName::parse("  ").is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
        assert!(DisplayName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn username_is_folded_and_checked() {
        assert_eq!(Username::parse("Mum").expect("valid").as_str(), "mum");
        assert!(Username::parse("mum dad").is_err());
        assert!(Username::parse("").is_err());
    }

    #[test]
    fn states_round_trip() {
        for s in [
            MessageState::Queued,
            MessageState::Delivered,
            MessageState::Played,
            MessageState::Received,
            MessageState::Heard,
        ] {
            assert_eq!(MessageState::parse(s.as_str()), Ok(s));
        }
        assert!(MessageState::parse("lost").is_err());
    }

    #[test]
    fn roles_keep_their_stored_forms_and_order() {
        // Found by cargo-mutants: no unit test parsed a role.
        for (s, r) in [
            ("relative", Role::Relative),
            ("parent", Role::Parent),
            ("admin", Role::Admin),
        ] {
            assert_eq!(Role::parse(s), Ok(r));
            assert_eq!(r.as_str(), s);
        }
        assert!(Role::parse("owner").is_err());
        assert!(
            Role::parse("Admin").is_err(),
            "the stored form is lower case"
        );
        assert!(Role::Relative < Role::Parent && Role::Parent < Role::Admin);
    }

    #[test]
    fn message_states_rank_along_their_paths() {
        // Found by cargo-mutants: `rank` (what keeps a state from moving
        // back) was never checked here.
        use MessageState::*;
        assert_eq!(
            [Queued, Delivered, Played].map(MessageState::rank),
            [0, 1, 2]
        );
        assert_eq!([Received, Heard].map(MessageState::rank), [0, 2]);
    }

    #[test]
    fn home_network_is_loopback_private_link_local_and_unique_local() {
        // Found by cargo-mutants: every mutant of `on_home_network` lived
        // through this module's tests (only `http::guard`'s table reached it).
        for (ip, home) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("172.31.255.254", true),
            ("192.168.1.50", true),
            ("169.254.3.4", true),
            ("8.8.8.8", false),
            ("172.32.0.1", false),
            ("100.64.0.1", false),
            ("::1", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", false),
            ("fe00::1", false),
            ("fb00::1", false),
            ("2001:db8::1", false),
            ("::", false),
            ("::ffff:192.168.0.9", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:8.8.8.8", false),
        ] {
            let addr: std::net::IpAddr = ip.parse().expect("address");
            assert_eq!(on_home_network(addr), home, "{ip}");
        }
    }

    #[test]
    fn names_may_be_64_characters_and_no_longer() {
        // Found by cargo-mutants: the 64-character boundary of usernames
        // and display names was never tried.
        assert!(Username::parse(&"m".repeat(64)).is_ok());
        assert!(Username::parse(&"m".repeat(65)).is_err());
        // Digits and `. _ -` are allowed, not only letters.
        assert_eq!(
            Username::parse("Ada.Okafor_2-b").expect("valid").as_str(),
            "ada.okafor_2-b"
        );
        assert!(Username::parse("ada+okafor").is_err());
        assert!(DisplayName::parse(&"é".repeat(64)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(65)).is_err());
    }

    #[test]
    fn directions_keep_their_stored_forms() {
        // Found by cargo-mutants: no unit test parsed or printed a direction.
        for (s, d) in [
            ("to_toy", Direction::ToToy),
            ("from_toy", Direction::FromToy),
        ] {
            assert_eq!(d.as_str(), s);
            assert_eq!(Direction::parse(s), Ok(d));
        }
        assert!(Direction::parse("sideways").is_err());
    }

    #[test]
    fn debug_output_shows_fingerprints_and_hides_pairing_codes() {
        // Found by cargo-mutants: nothing printed either value with `{:?}`.
        // A fingerprint prints as its hex (FIPS 180-2's "abc" vector).
        assert_eq!(
            format!("{:?}", Hex32::sha256(b"abc")),
            "Hex32(ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad)"
        );
        // A pairing code is a secret while its pairing is open: debug
        // output says a code is there, never its digits, also inside
        // derived `Debug` output.
        let code = PairingCode::parse("428917").expect("valid");
        assert_eq!(format!("{code:?}"), "PairingCode(******)");
        let nested = format!("{:?}", Some((code, 7)));
        assert_eq!(nested, "Some((PairingCode(******), 7))");
        assert!(!format!("{code:#?}").contains("428917"));
    }
}
