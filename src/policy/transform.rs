//! The scalar transforms: what a purpose may see only in disguise.
//!
//! Each takes the decoded value and returns the JSON text to write (always a string, so a
//! disguised number does not pretend to be a measurement).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::action::Transform;

/// What transforms need besides the value: the pseudonymisation MAC, keyed and, when
/// pseudonyms are per reuser, already fed the reuser's identity.
///
/// Keying an HMAC costs two SHA-256 compressions (the inner and outer pads) and hashing a
/// short value only two more, so keying per value doubled the cost of every pseudonym, and
/// keying per request cost as much as the whole response plan of a 1 KiB request. The keyed
/// state is prepared once per configuration ([`PseudonymKey`]); a request takes a copy fed
/// its client, and each value clones that.
#[derive(Clone)]
pub struct TransformContext {
    /// HMAC-SHA-256 under the pseudonymisation key, fed the client prefix if any; or why
    /// no pseudonym can be made, reported only when a value asks for one (a policy without
    /// `pseudonymize` needs no key).
    pseudonym_mac: Result<Hmac<Sha256>, String>,
    /// Kept only so `Debug` can say whose context this is.
    client: Option<String>,
}

impl TransformContext {
    /// Prepares the pseudonymisation MAC: `pseudonym_key` keys it (`None`: pseudonymising
    /// is refused) and `client`, when pseudonyms are per reuser, is mixed in so two reusers
    /// cannot join their data on pseudonyms. The proxy keys once per configuration instead
    /// ([`PseudonymKey`]).
    pub fn new(pseudonym_key: Option<&[u8]>, client: Option<&str>) -> TransformContext {
        PseudonymKey::new(pseudonym_key).context(client)
    }
}

/// The pseudonymisation key as a keyed HMAC state, prepared once per configuration: each
/// request's [`TransformContext`] starts from a copy of it.
#[derive(Clone)]
pub struct PseudonymKey {
    /// As in [`TransformContext`], before any client is fed.
    mac: Result<Hmac<Sha256>, String>,
}

impl PseudonymKey {
    /// Keys the MAC (two SHA-256 compressions); `None`: pseudonymising will be refused.
    pub fn new(pseudonym_key: Option<&[u8]>) -> PseudonymKey {
        let mac = match pseudonym_key {
            None => Err("no pseudonymisation key is configured".to_string()),
            Some(key) => Hmac::<Sha256>::new_from_slice(key).map_err(|e| e.to_string()),
        };
        PseudonymKey { mac }
    }

    /// The context for one request: a copy of the keyed state, fed the reuser's identity
    /// when pseudonyms are per reuser. No compression runs here: the short prefix only fills
    /// the hash's buffer.
    pub fn context(&self, client: Option<&str>) -> TransformContext {
        let pseudonym_mac = match (&self.mac, client) {
            (Ok(mac), Some(client)) => {
                let mut mac = mac.clone();
                // Length-prefixed, so no (client, value) pair can collide with another.
                mac.update(&(client.len() as u32).to_be_bytes());
                mac.update(client.as_bytes());
                Ok(mac)
            }
            (mac, _) => mac.clone(),
        };
        TransformContext {
            pseudonym_mac,
            client: client.map(str::to_string),
        }
    }
}

impl fmt::Debug for PseudonymKey {
    /// Says whether a key is set, never the key nor the keyed state (which is as secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PseudonymKey")
            .field("key", &self.mac.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for TransformContext {
    /// No key: every transform but `pseudonymize` works.
    fn default() -> TransformContext {
        TransformContext::new(None, None)
    }
}

impl fmt::Debug for TransformContext {
    /// Says whether a key is set, never the key nor the keyed state (which is as secret).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransformContext")
            .field(
                "pseudonym_key",
                &self.pseudonym_mac.as_ref().map(|_| "<redacted>"),
            )
            .field("client", &self.client)
            .finish()
    }
}

/// Applies `transform` to `value` (decoded string content, or a number's text).
pub fn apply(
    transform: &Transform,
    value: &[u8],
    is_string: bool,
    context: &TransformContext,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    apply_into(transform, value, is_string, context, &mut out)?;
    Ok(out)
}

/// As [`apply`], appending the JSON text to `out` (left as it was on error): the filter
/// disguises a value per entry of a large response, and a pseudonym then costs its two
/// SHA-256 compressions and no allocation.
pub fn apply_into(
    transform: &Transform,
    value: &[u8],
    is_string: bool,
    context: &TransformContext,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    // A pseudonym hashes the bytes; the others read characters.
    let text = || std::str::from_utf8(value).map_err(|_| "value is not UTF-8".to_string());
    let result: String = match transform {
        Transform::Pseudonymize => return write_pseudonym(value, context, out),
        Transform::Year => {
            if !is_string {
                return Err("\"year\" expects an ISO 8601 date string, found a number".into());
            }
            year(text()?)
                .ok_or_else(|| "\"year\" expects an ISO 8601 date or date-time".to_string())?
        }
        Transform::Truncate(n) => text()?.chars().take(*n).collect(),
        Transform::Mask { keep_last } => {
            let text = text()?;
            let count = text.chars().count();
            let hidden = count.saturating_sub(*keep_last);
            text.chars()
                .enumerate()
                .map(|(i, c)| if i < hidden { '*' } else { c })
                .collect()
        }
    };
    serde_json::to_writer(out, &result).map_err(|e| e.to_string())
}

/// Characters of a pseudonym: 32 bytes of HMAC-SHA-256 in unpadded base64.
const PSEUDONYM_CHARS: usize = 43;

/// Appends the pseudonym of `value` as a JSON string: the HMAC under the context's key
/// (and client, if any) in URL-safe base64, which needs no escaping in JSON.
fn write_pseudonym(
    value: &[u8],
    context: &TransformContext,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut mac = context
        .pseudonym_mac
        .as_ref()
        .map_err(Clone::clone)?
        .clone();
    mac.update(value);
    let mut encoded = [0u8; PSEUDONYM_CHARS];
    let written = URL_SAFE_NO_PAD
        .encode_slice(mac.finalize().into_bytes(), &mut encoded)
        .map_err(|e| e.to_string())?;
    out.push(b'"');
    out.extend_from_slice(&encoded[..written]);
    out.push(b'"');
    Ok(())
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
        let context = TransformContext::new(Some(b"0123456789abcdef0123456789abcdef"), None);
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
        let key = b"0123456789abcdef0123456789abcdef";
        let with = |client: Option<&str>| TransformContext::new(Some(key), client);
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

    #[test]
    fn prepared_mac_equals_a_freshly_keyed_hmac() {
        // The pseudonym as computed before the MAC was prepared per request: keyed anew,
        // then the length-prefixed client, then the value.
        let fresh = |key: &[u8], client: Option<&str>, value: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
            if let Some(client) = client {
                mac.update(&(client.len() as u32).to_be_bytes());
                mac.update(client.as_bytes());
            }
            mac.update(value.as_bytes());
            format!(
                "\"{}\"",
                URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
            )
        };
        let key = b"0123456789abcdef0123456789abcdef";
        let p = |ctx: &TransformContext, v: &str| {
            String::from_utf8(apply(&Transform::Pseudonymize, v.as_bytes(), true, ctx).unwrap())
                .unwrap()
        };
        // Known answers (also from Python's hmac module), so both sides cannot drift together.
        let plain = TransformContext::new(Some(key), None);
        let partner = TransformContext::new(Some(key), Some("partner"));
        assert_eq!(
            p(&plain, "p1"),
            "\"N0TdjmiKTzohLnPQPHZd9fJLDQAe7BRPRnwiHA1NusU\""
        );
        assert_eq!(
            p(&partner, "p1"),
            "\"AmvAK8NxfIhOHZsuhsyMKCmDQ9KZvO77_EiZwXCRGds\""
        );
        // Values and prefixes across block boundaries, a key longer than a block (hashed
        // first), an empty client; each context used repeatedly, as per request.
        let long_key = [0x5a_u8; 100];
        let long_client = "c".repeat(70);
        for k in [&key[..], &long_key[..], b"k"] {
            for client in [None, Some(""), Some("partner"), Some(long_client.as_str())] {
                let ctx = TransformContext::new(Some(k), client);
                // The per-request path: one key prepared, a context per request from it.
                let prepared = PseudonymKey::new(Some(k));
                let _ = prepared.context(Some("another request"));
                let from_prepared = prepared.context(client);
                for value in ["p1", "", &"v".repeat(55), &"é".repeat(100), "p1"] {
                    assert_eq!(
                        p(&ctx, value),
                        fresh(k, client, value),
                        "{client:?} {value}"
                    );
                    assert_eq!(p(&from_prepared, value), fresh(k, client, value));
                }
            }
        }
    }

    #[test]
    fn debug_never_shows_the_key() {
        let ctx = TransformContext::new(Some(b"secret-key-0123456789abcdefghijk"), Some("partner"));
        let shown = format!("{ctx:?}");
        assert!(!shown.contains("secret-key"), "{shown}");
        assert_eq!(
            shown,
            r#"TransformContext { pseudonym_key: Ok("<redacted>"), client: Some("partner") }"#
        );
        let key = PseudonymKey::new(Some(b"secret-key-0123456789abcdefghijk"));
        assert_eq!(
            format!("{key:?}"),
            r#"PseudonymKey { key: Ok("<redacted>") }"#
        );
    }
}
