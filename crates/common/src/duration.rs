//! Postfix-style time values: `300s`, `5m`, `4h`, `5d`, `1w`, `250ms`, or a
//! bare number of seconds. Used with `#[serde(with = "postern_common::duration")]`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parse a time value; the error says what is accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 300s, 5m, 4h, 5d, 250ms)"))?;
    let secs = |mult: u64| {
        n.checked_mul(mult)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{s:?} is too large a duration"))
    };
    match unit.trim() {
        "" | "s" => secs(1),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        "w" => secs(604_800),
        _ => Err(format!(
            "{s:?} is not a duration: unknown unit {unit:?} (use ms, s, m, h, d or w)"
        )),
    }
}

/// Format with the largest unit that represents the value exactly.
pub fn format(d: Duration) -> String {
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3600), ("m", 60)] {
        if s != 0 && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

pub fn serialize<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&format(*d))
}

pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(de)? {
        Raw::Secs(n) => Ok(Duration::from_secs(n)),
        Raw::Text(t) => parse(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            ("300s", 300_000),
            ("300", 300_000),
            ("5m", 300_000),
            ("4h", 14_400_000),
            ("5d", 432_000_000),
            ("1w", 604_800_000),
            ("250ms", 250),
        ];
        for (text, ms) in ok {
            assert_eq!(parse(text).unwrap(), Duration::from_millis(ms), "{text}");
            assert_eq!(
                parse(&format(parse(text).unwrap())).unwrap(),
                parse(text).unwrap()
            );
        }
        for bad in ["", "s", "5 parsecs", "-1s", "1.5h", "99999999999999999999w"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format(Duration::from_secs(4000)), "4000s");
        assert_eq!(format(Duration::from_secs(432_000)), "5d");
    }
}
