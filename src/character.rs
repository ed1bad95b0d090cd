//! Toys as characters (issue 15): the vocabulary of a toy's picture
//! ([`Picture`], drawn animals served from `static/toy-*.svg`), a time of
//! day ([`ClockTime`]) and a toy's quiet hours ([`QuietHours`]) with their
//! one rule, written once: [`QuietHours::ends_after`] says whether a moment
//! lies in the quiet hours and when they end.
//!
//! Like `domain`, this module does no I/O and reads no clock: the moment
//! and the household's time zone are passed in ([`local_zone`] is what the
//! use cases pass: the hub's system time zone). `store` rows carry these
//! types, which is why they live here and not in a use-case module.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Time;
use jiff::tz::TimeZone;

use crate::domain::{Invalid, ToyId};

/// A toy's picture: one of a small built-in set of drawn animals (no
/// uploads, no faces of real children).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Picture {
    /// A bear.
    Bear,
    /// A bunny.
    Bunny,
    /// A cat.
    Cat,
    /// A dog.
    Dog,
    /// An owl.
    Owl,
    /// A fox.
    Fox,
    /// A whale.
    Whale,
    /// A dinosaur.
    Dino,
}

impl Picture {
    /// Every picture, in the order the picker shows them.
    pub const ALL: [Self; 8] = [
        Self::Bear,
        Self::Bunny,
        Self::Cat,
        Self::Dog,
        Self::Owl,
        Self::Fox,
        Self::Whale,
        Self::Dino,
    ];

    /// The stored and wire form (also the file `static/toy-<name>.svg`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bear => "bear",
            Self::Bunny => "bunny",
            Self::Cat => "cat",
            Self::Dog => "dog",
            Self::Owl => "owl",
            Self::Fox => "fox",
            Self::Whale => "whale",
            Self::Dino => "dino",
        }
    }

    /// Parses the wire form; anything else names the choices.
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
                Invalid(format!(
                    "picture is one of {}; {s:?} is not",
                    names.join(", ")
                ))
            })
    }

    /// The words for it (alt text and the picker's labels).
    pub fn label(self) -> &'static str {
        match self {
            Self::Bear => "Bear",
            Self::Bunny => "Bunny",
            Self::Cat => "Cat",
            Self::Dog => "Dog",
            Self::Owl => "Owl",
            Self::Fox => "Fox",
            Self::Whale => "Whale",
            Self::Dino => "Dinosaur",
        }
    }

    /// The path of its drawing.
    pub fn src(self) -> String {
        format!("/static/toy-{}.svg", self.as_str())
    }

    /// The picture of a toy no parent chose one for: derived from its id
    /// (FNV-1a), so toys differ and a toy keeps its picture across restarts.
    pub fn default_for(toy_id: &ToyId) -> Self {
        let mut h: u32 = 0x811c_9dc5;
        for b in toy_id.as_str().bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        Self::ALL[(h % Self::ALL.len() as u32) as usize]
    }
}

/// A time of day, to the minute (`HH:MM`, 24-hour clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockTime(u16);

impl ClockTime {
    /// From minutes after midnight (0 to 1439).
    pub fn from_minutes(m: u16) -> Option<Self> {
        (m < 24 * 60).then_some(Self(m))
    }

    /// Minutes after midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }

    /// Parses `HH:MM` (what `<input type="time">` sends; seconds are refused).
    pub fn parse(what: &str, s: &str) -> Result<Self, Invalid> {
        let bad = || {
            Invalid(format!(
                "{what} is a time of day as HH:MM from 00:00 to 23:59, like 19:30; {s:?} is not"
            ))
        };
        let (h, m) = s.split_once(':').ok_or_else(bad)?;
        if h.len() != 2 || m.len() != 2 || !(h.bytes().chain(m.bytes())).all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        Ok(Self(h * 60 + m))
    }

    fn civil(self) -> Time {
        // Both parts are in range by construction.
        Time::constant((self.0 / 60) as i8, (self.0 % 60) as i8, 0, 0)
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

/// A toy's quiet hours: from `start` to `end` local time, crossing
/// midnight when `end` is earlier (19:30 to 07:00). While they apply, the
/// toy is handed no message; they are kept when switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// Whether they apply.
    pub on: bool,
    /// When they begin.
    pub start: ClockTime,
    /// When they end.
    pub end: ClockTime,
}

impl QuietHours {
    /// Checked quiet hours: `start` and `end` must differ (a whole day of
    /// quiet would hold every message forever).
    pub fn new(on: bool, start: ClockTime, end: ClockTime) -> Result<Self, Invalid> {
        if start == end {
            return Err(Invalid(format!(
                "quiet hours must end at another time than they start (both are {start})"
            )));
        }
        Ok(Self { on, start, end })
    }

    /// Whether a local time of day lies in the quiet hours (start included,
    /// end excluded), whether or not they are on.
    pub fn covers(&self, t: ClockTime) -> bool {
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// The rule: when `now` (Unix seconds) lies in quiet hours that are on,
    /// the Unix time they end in `zone`; `None` otherwise. An end that falls
    /// in a daylight-saving gap is taken as the first moment after it.
    pub fn ends_after(&self, now: i64, zone: &TimeZone) -> Option<i64> {
        if !self.on {
            return None;
        }
        let local = Timestamp::from_second(now).ok()?.to_zoned(zone.clone());
        let minute = ClockTime::from_minutes((local.hour() as u16) * 60 + local.minute() as u16)?;
        if !self.covers(minute) {
            return None;
        }
        let mut day = local.date();
        if self.end <= minute {
            day = day.tomorrow().ok()?;
        }
        let end = day
            .to_datetime(self.end.civil())
            .to_zoned(zone.clone())
            .ok()?;
        Some(end.timestamp().as_second())
    }
}

/// The household's time zone, which quiet hours are read in: the hub's
/// system time zone (`TZ` when set, else `/etc/localtime`; UTC when neither
/// can be read). A Raspberry Pi's is set with `timedatectl set-timezone`.
pub fn local_zone() -> TimeZone {
    TimeZone::system()
}

/// The name of a zone for people ("Europe/Berlin"), or, when it has none
/// (a `TZ` rule or a bare TZif file), its offset from UTC at `now`.
pub fn zone_name(zone: &TimeZone, now: i64) -> String {
    match zone.iana_name() {
        Some(n) => n.to_owned(),
        None => Timestamp::from_second(now)
            .map(|t| format!("UTC{}", t.to_zoned(zone.clone()).offset()))
            .unwrap_or_else(|_| "UTC".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> ClockTime {
        ClockTime::parse("t", s).expect("time")
    }

    #[test]
    fn pictures_round_trip_and_differ_by_toy() {
        for p in Picture::ALL {
            assert_eq!(Picture::parse(p.as_str()), Ok(p));
        }
        let e = Picture::parse("unicorn").expect_err("refused");
        assert!(e.0.contains("bear, bunny"), "{e}");
        let ids = ["toy-1", "toy-2", "toy-3", "bear", "fox", "owl-7"];
        let picks: std::collections::HashSet<_> = ids
            .iter()
            .map(|i| Picture::default_for(&ToyId::parse(i).expect("id")))
            .collect();
        assert!(picks.len() > 1, "toys differ: {picks:?}");
        let id = ToyId::parse("toy-1").expect("id");
        assert_eq!(Picture::default_for(&id), Picture::default_for(&id));
    }

    #[test]
    fn times_parse_strictly() {
        assert_eq!(t("19:30").minutes(), 19 * 60 + 30);
        assert_eq!(t("00:00").to_string(), "00:00");
        assert_eq!(t("23:59").to_string(), "23:59");
        for bad in [
            "24:00", "7:00", "07:60", "0700", "07:00:00", "", "aa:bb", "-1:00",
        ] {
            let e = ClockTime::parse("start", bad).expect_err(bad);
            assert!(e.0.starts_with("start is a time of day"), "{e}");
        }
    }

    #[test]
    fn quiet_hours_cross_midnight() {
        let q = QuietHours::new(true, t("19:30"), t("07:00")).expect("q");
        assert!(q.covers(t("19:30")) && q.covers(t("23:59")) && q.covers(t("00:00")));
        assert!(q.covers(t("06:59")));
        assert!(!q.covers(t("07:00")) && !q.covers(t("12:00")) && !q.covers(t("19:29")));
        let d = QuietHours::new(true, t("13:00"), t("15:00")).expect("q");
        assert!(d.covers(t("13:00")) && !d.covers(t("15:00")) && !d.covers(t("12:59")));
        assert!(QuietHours::new(true, t("07:00"), t("07:00")).is_err());
    }

    #[test]
    fn ends_after_in_a_zone() {
        let zone = TimeZone::get("Europe/Berlin")
            .unwrap_or(TimeZone::fixed(jiff::tz::Offset::constant(1)));
        let at = |s: &str| -> i64 {
            let dt: jiff::civil::DateTime = s.parse().expect("dt");
            dt.to_zoned(zone.clone())
                .expect("zoned")
                .timestamp()
                .as_second()
        };
        let q = QuietHours::new(true, t("19:30"), t("07:00")).expect("q");
        assert_eq!(
            q.ends_after(at("2026-01-10T20:00"), &zone),
            Some(at("2026-01-11T07:00"))
        );
        assert_eq!(
            q.ends_after(at("2026-01-11T06:59"), &zone),
            Some(at("2026-01-11T07:00"))
        );
        assert_eq!(q.ends_after(at("2026-01-11T07:00"), &zone), None);
        assert_eq!(q.ends_after(at("2026-01-11T12:00"), &zone), None);
        let off = QuietHours { on: false, ..q };
        assert_eq!(off.ends_after(at("2026-01-10T20:00"), &zone), None);
    }
}
