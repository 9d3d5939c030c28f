//! Durations as people write them in scenario files and on the command line:
//! `250ms`, `30s`, `10m`, `1h`, `1.5s`, or a bare number of seconds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration that reads and writes as text (`"30s"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

/// A duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read `{0}` as a duration (examples: 250ms, 30s, 10m, 1h)")]
pub struct DurationError(pub String);

impl Dur {
    /// Microseconds, saturating.
    pub fn micros(self) -> u64 {
        u64::try_from(self.0.as_micros()).unwrap_or(u64::MAX)
    }

    /// From microseconds.
    pub fn from_micros(micros: u64) -> Dur {
        Dur(Duration::from_micros(micros))
    }

    /// From whole seconds.
    pub fn secs(secs: u64) -> Dur {
        Dur(Duration::from_secs(secs))
    }

    /// From milliseconds.
    pub fn millis(millis: u64) -> Dur {
        Dur(Duration::from_millis(millis))
    }
}

/// Parses `250ms`, `30s`, `10m`, `1h`, `2us`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| DurationError(text.to_owned()))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(DurationError(text.to_owned())),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(DurationError(text.to_owned()));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl std::str::FromStr for Dur {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Dur, DurationError> {
        parse_duration(s).map(Dur)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let micros = self.micros();
        if micros % 3_600_000_000 == 0 && micros > 0 {
            write!(f, "{}h", micros / 3_600_000_000)
        } else if micros % 60_000_000 == 0 && micros > 0 {
            write!(f, "{}m", micros / 60_000_000)
        } else if micros % 1_000_000 == 0 {
            write!(f, "{}s", micros / 1_000_000)
        } else if micros % 1_000 == 0 {
            write!(f, "{}ms", micros / 1_000)
        } else {
            write!(f, "{micros}us")
        }
    }
}

impl Serialize for Dur {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Dur, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Secs(f64),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(text) => parse_duration(&text).map(Dur).map_err(serde::de::Error::custom),
            Raw::Secs(secs) if secs.is_finite() && secs >= 0.0 => Ok(Dur(Duration::from_secs_f64(secs))),
            Raw::Secs(secs) => Err(serde::de::Error::custom(format!("bad duration {secs}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_round_trip() {
        for (text, micros) in [("250ms", 250_000), ("30s", 30_000_000), ("10m", 600_000_000), ("1.5s", 1_500_000)] {
            let d: Dur = text.parse().expect("parses");
            assert_eq!(d.micros(), micros);
        }
        assert_eq!(Dur::secs(600).to_string(), "10m");
        assert_eq!(Dur::millis(1500).to_string(), "1500ms");
        assert!("ten".parse::<Dur>().is_err());
        assert!("5parsecs".parse::<Dur>().is_err());
    }
}
