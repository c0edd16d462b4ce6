//! The scalar transforms: what a purpose may see only in disguise.
//!
//! Each takes the decoded value and returns the JSON text to write (always a string, so a
//! disguised number does not pretend to be a measurement).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::action::Transform;

/// What transforms need besides the value: the pseudonymisation key and, when pseudonyms
/// are per reuser, the reuser's identity.
#[derive(Debug, Clone, Default)]
pub struct TransformContext {
    pub pseudonym_key: Option<Arc<[u8]>>,
    /// Mixed into the MAC so two reusers cannot join their data on pseudonyms.
    pub client: Option<String>,
}

/// Applies `transform` to `value` (decoded string content, or a number's text).
pub fn apply(
    transform: &Transform,
    value: &[u8],
    is_string: bool,
    context: &TransformContext,
) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(value).map_err(|_| "value is not UTF-8".to_string())?;
    let result = match transform {
        Transform::Pseudonymize => pseudonymize(text, context)?,
        Transform::Year => {
            if !is_string {
                return Err("\"year\" expects an ISO 8601 date string, found a number".into());
            }
            year(text)
                .ok_or_else(|| "\"year\" expects an ISO 8601 date or date-time".to_string())?
        }
        Transform::Truncate(n) => text.chars().take(*n).collect(),
        Transform::Mask { keep_last } => {
            let count = text.chars().count();
            let hidden = count.saturating_sub(*keep_last);
            text.chars()
                .enumerate()
                .map(|(i, c)| if i < hidden { '*' } else { c })
                .collect()
        }
    };
    serde_json::to_vec(&result).map_err(|e| e.to_string())
}

fn pseudonymize(text: &str, context: &TransformContext) -> Result<String, String> {
    let key = context
        .pseudonym_key
        .as_ref()
        .ok_or_else(|| "no pseudonymisation key is configured".to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(|e| e.to_string())?;
    if let Some(client) = &context.client {
        // Length-prefixed, so no (client, value) pair can collide with another.
        mac.update(&(client.len() as u32).to_be_bytes());
        mac.update(client.as_bytes());
    }
    mac.update(text.as_bytes());
    Ok(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The year of an ISO 8601 calendar date (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`) or date-time
/// (`YYYY-MM-DDThh:mm[:ss[.f]][Z|±hh:mm]`), as written (no time-zone conversion).
fn year(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let slice = b.get(range)?;
        if slice.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(slice).ok()?.parse().ok()
        } else {
            None
        }
    };
    let year = digits(0..4)?;
    let valid = match b.len() {
        4 => true,
        7 => b[4] == b'-' && (1..=12).contains(&digits(5..7)?),
        _ => {
            b.get(4) == Some(&b'-')
                && b.get(7) == Some(&b'-')
                && (1..=12).contains(&digits(5..7)?)
                && (1..=31).contains(&digits(8..10)?)
                && (b.len() == 10 || time(&b[10..]))
        }
    };
    valid.then(|| format!("{year:04}"))
}

fn time(b: &[u8]) -> bool {
    let two = |i: usize, max: u32| -> bool {
        b.get(i..i + 2)
            .filter(|s| s.iter().all(u8::is_ascii_digit))
            .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u32>().ok())
            .is_some_and(|v| v <= max)
    };
    if !(matches!(b.first(), Some(b'T' | b't' | b' '))
        && two(1, 23)
        && b.get(3) == Some(&b':')
        && two(4, 59))
    {
        return false;
    }
    let mut i = 6;
    if b.get(i) == Some(&b':') {
        if !two(i + 1, 60) {
            return false;
        }
        i += 3;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            two(i + 1, 23) && b.get(i + 3) == Some(&b':') && two(i + 4, 59) && i + 6 == b.len()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(transform: Transform, value: &str, is_string: bool) -> Result<String, String> {
        let context = TransformContext {
            pseudonym_key: Some(Arc::from(&b"0123456789abcdef0123456789abcdef"[..])),
            client: None,
        };
        apply(&transform, value.as_bytes(), is_string, &context)
            .map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn year_of_dates_and_date_times() {
        for (input, year) in [
            ("1984-03-07", "\"1984\""),
            ("1984", "\"1984\""),
            ("1984-03", "\"1984\""),
            ("1984-03-07T10:20", "\"1984\""),
            ("1984-03-07T10:20:30Z", "\"1984\""),
            ("1984-12-31T23:59:59.123+14:00", "\"1984\""),
            ("1985-01-01T00:30:00-05:00", "\"1985\""),
        ] {
            assert_eq!(run(Transform::Year, input, true).unwrap(), year, "{input}");
        }
        for bad in [
            "",
            "84",
            "1984-13-01",
            "1984-03-07X",
            "03/07/1984",
            "1984-03-07T25:00",
            "1984-03-07T10:20+0100",
            "１９８４",
        ] {
            assert!(run(Transform::Year, bad, true).is_err(), "{bad}");
        }
        assert!(run(Transform::Year, "1984", false).is_err());
    }

    #[test]
    fn truncate_and_mask_count_characters_not_bytes() {
        assert_eq!(
            run(Transform::Truncate(2), "69003", true).unwrap(),
            "\"69\""
        );
        assert_eq!(
            run(Transform::Truncate(2), "69003", false).unwrap(),
            "\"69\""
        );
        assert_eq!(
            run(Transform::Truncate(3), "Éloïse", true).unwrap(),
            "\"Élo\""
        );
        assert_eq!(run(Transform::Truncate(9), "ab", true).unwrap(), "\"ab\"");
        assert_eq!(
            run(Transform::Mask { keep_last: 4 }, "0612345678", true).unwrap(),
            "\"******5678\""
        );
        assert_eq!(
            run(Transform::Mask { keep_last: 4 }, "ab", true).unwrap(),
            "\"ab\""
        );
        assert_eq!(
            run(Transform::Mask { keep_last: 0 }, "été", true).unwrap(),
            "\"***\""
        );
        assert_eq!(
            run(Transform::Truncate(1), "\"\n", true).unwrap(),
            "\"\\\"\""
        );
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_per_client() {
        let key: Arc<[u8]> = Arc::from(&b"0123456789abcdef0123456789abcdef"[..]);
        let with = |client: Option<&str>| TransformContext {
            pseudonym_key: Some(key.clone()),
            client: client.map(str::to_string),
        };
        let p = |ctx: &TransformContext, v: &str| {
            apply(&Transform::Pseudonymize, v.as_bytes(), true, ctx).unwrap()
        };
        assert_eq!(p(&with(None), "p1"), p(&with(None), "p1"));
        assert_ne!(p(&with(None), "p1"), p(&with(None), "p2"));
        assert_ne!(p(&with(Some("a")), "p1"), p(&with(Some("b")), "p1"));
        assert_eq!(p(&with(Some("a")), "p1"), p(&with(Some("a")), "p1"));
        // 32 bytes of MAC, base64url without padding, quoted.
        assert_eq!(p(&with(None), "p1").len(), 43 + 2);
        let missing = TransformContext::default();
        assert_eq!(
            apply(&Transform::Pseudonymize, b"p1", true, &missing).unwrap_err(),
            "no pseudonymisation key is configured"
        );
    }
}
