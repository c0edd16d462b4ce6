//! The keys that verify bearer tokens, and when to fetch them again.
//!
//! [`Verifier`] is a pure state machine: it never performs I/O. The proxy adapter drives it
//! from the root context of each VM:
//! - on start and on every tick ([`TICK_SECONDS`]): when [`Verifier::needs_fetch`] says so,
//!   call [`Verifier::fetch_started`], then dispatch `GET path` to `cluster` (see
//!   [`Verifier::remote`]) with a timeout of [`FETCH_TIMEOUT_MS`];
//! - when the call returns (or fails to be dispatched): [`Verifier::on_fetch_response`] with
//!   the status and body (`None` for no response), and log the [`FetchReport`];
//! - on each request: [`Verifier::verify`] (through `auth::bearer::BearerClaims`, the
//!   caller's claims in `request::decide`), which also asks for an early refresh when a
//!   token names a `kid` the set lacks.
//!
//! The last good set is kept when a refresh fails; failures are retried with an exponential
//! backoff; an unknown `kid` brings the next fetch forward at most once every
//! [`EARLY_REFRESH_MIN_SECONDS`]. Until a first set is known, requests that need a token
//! get 503 with `Retry-After`, never an unverified pass.

use std::fmt;
use std::sync::Arc;

use super::claims::BearerRefusal;
use super::jwks::{KeySet, SkippedKey};
use super::jwt::{self, TokenError, VerifiedToken, VerifySettings};

/// How often the adapter should call [`Verifier::needs_fetch`].
pub const TICK_SECONDS: u64 = 1;
/// Timeout of one JWKS fetch.
pub const FETCH_TIMEOUT_MS: u64 = 5_000;
/// A fetch without an answer after this long no longer blocks the next one.
pub const IN_FLIGHT_GUARD_SECONDS: u64 = 15;
/// Least time between two fetches when an unknown `kid` asks for an early one.
pub const EARLY_REFRESH_MIN_SECONDS: u64 = 30;
/// Longest wait between two attempts after failures.
pub const MAX_BACKOFF_SECONDS: u64 = 60;
/// Largest JWKS document read.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A JWK Set served by a cluster of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    pub path: String,
    /// The fetch's `:authority` (the cluster name unless configured).
    pub authority: String,
    pub refresh_seconds: u64,
}

/// Where the verification keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// Read from the configuration at load (possibly empty when only an HMAC secret is set).
    Inline(Arc<KeySet>),
    Remote(RemoteJwks),
}

/// Everything that verifies a bearer token: the checks and the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub settings: VerifySettings,
    pub keys: KeySource,
}

/// What came of a fetch, for the adapter's log.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchReport {
    Updated {
        keys: usize,
        skipped: Vec<SkippedKey>,
    },
    Failed {
        reason: String,
        /// Whether an earlier set is still in use.
        kept_last_good: bool,
        retry_in_seconds: u64,
    },
}

impl fmt::Display for FetchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchReport::Updated { keys, skipped } => {
                write!(
                    f,
                    "JWKS updated: {keys} key{}",
                    if *keys == 1 { "" } else { "s" }
                )?;
                for key in skipped {
                    write!(f, "; {key}")?;
                }
                Ok(())
            }
            FetchReport::Failed {
                reason,
                kept_last_good,
                retry_in_seconds,
            } => write!(
                f,
                "JWKS fetch failed: {reason}; {}; next attempt in {retry_in_seconds} s",
                if *kept_last_good {
                    "keeping the last good set"
                } else {
                    "no key set yet: requests that need a token get 503"
                }
            ),
        }
    }
}

/// The keys of one VM, and the schedule of their fetches.
#[derive(Debug, Clone)]
pub struct Verifier {
    verification: Arc<Verification>,
    keys: Option<Arc<KeySet>>,
    next_fetch_at: u64,
    in_flight_since: Option<u64>,
    last_fetch_started: Option<u64>,
    failures: u32,
}

impl Verifier {
    /// Inline keys are known at once; a remote set is due for a fetch at once.
    pub fn new(verification: Arc<Verification>) -> Verifier {
        let keys = match &verification.keys {
            KeySource::Inline(set) => Some(set.clone()),
            KeySource::Remote(_) => None,
        };
        Verifier {
            verification,
            keys,
            next_fetch_at: 0,
            in_flight_since: None,
            last_fetch_started: None,
            failures: 0,
        }
    }

    /// The cluster and path to fetch from, for a remote set.
    pub fn remote(&self) -> Option<&RemoteJwks> {
        match &self.verification.keys {
            KeySource::Remote(remote) => Some(remote),
            KeySource::Inline(_) => None,
        }
    }

    /// The current key set; `None` until a first remote set arrives.
    pub fn keys(&self) -> Option<&Arc<KeySet>> {
        self.keys.as_ref()
    }

    /// Whether the adapter should fetch the set now.
    pub fn needs_fetch(&self, now: u64) -> bool {
        self.remote().is_some()
            && self
                .in_flight_since
                .is_none_or(|since| now >= since.saturating_add(IN_FLIGHT_GUARD_SECONDS))
            && now >= self.next_fetch_at
    }

    /// The adapter dispatched a fetch.
    pub fn fetch_started(&mut self, now: u64) {
        self.in_flight_since = Some(now);
        self.last_fetch_started = Some(now);
    }

    /// The fetch ended: `status` and `body` of the response, `None` when there was none
    /// (connection failure, timeout, or a dispatch the host refused).
    pub fn on_fetch_response(
        &mut self,
        now: u64,
        status: Option<u16>,
        body: Option<&[u8]>,
    ) -> FetchReport {
        self.in_flight_since = None;
        let Some(remote) = self.remote() else {
            return FetchReport::Failed {
                reason: "the keys are inline; nothing is fetched".into(),
                kept_last_good: true,
                retry_in_seconds: 0,
            };
        };
        let refresh = remote.refresh_seconds.max(1);
        match read_response(status, body) {
            Ok(set) => {
                let report = FetchReport::Updated {
                    keys: set.len(),
                    skipped: set.skipped.clone(),
                };
                self.keys = Some(Arc::new(set));
                self.failures = 0;
                self.next_fetch_at = now.saturating_add(refresh);
                report
            }
            Err(reason) => {
                self.failures = self.failures.saturating_add(1);
                let backoff = 1u64 << self.failures.saturating_sub(1).min(16);
                let delay = backoff.min(MAX_BACKOFF_SECONDS).min(refresh);
                self.next_fetch_at = now.saturating_add(delay);
                FetchReport::Failed {
                    reason,
                    kept_last_good: self.keys.is_some(),
                    retry_in_seconds: delay,
                }
            }
        }
    }

    /// A token named a `kid` the set lacks: brings the next fetch forward, unless a fetch is
    /// under way or one started less than [`EARLY_REFRESH_MIN_SECONDS`] ago. Returns whether
    /// it did.
    pub fn on_unknown_kid(&mut self, now: u64) -> bool {
        if self.remote().is_none() || self.in_flight_since.is_some() {
            return false;
        }
        if self
            .last_fetch_started
            .is_some_and(|at| now < at.saturating_add(EARLY_REFRESH_MIN_SECONDS))
        {
            return false;
        }
        self.next_fetch_at = self.next_fetch_at.min(now);
        true
    }

    /// The `Retry-After` of a 503 while no set is known.
    pub fn retry_after_seconds(&self, now: u64) -> u32 {
        if self.in_flight_since.is_some() {
            return 1;
        }
        self.next_fetch_at
            .saturating_sub(now)
            .clamp(1, MAX_BACKOFF_SECONDS) as u32
    }

    /// Verifies a compact JWS (a bearer token) at `now` (Unix seconds).
    pub fn verify(&mut self, token: &str, now: u64) -> Result<VerifiedToken, BearerRefusal> {
        let Some(keys) = &self.keys else {
            return Err(BearerRefusal::KeysUnavailable {
                retry_after_seconds: self.retry_after_seconds(now),
            });
        };
        match jwt::verify(token, keys, &self.verification.settings, now) {
            Ok(verified) => Ok(verified),
            Err(TokenError::UnknownKey) => {
                self.on_unknown_kid(now);
                Err(BearerRefusal::Invalid(TokenError::UnknownKey))
            }
            Err(error) => Err(BearerRefusal::Invalid(error)),
        }
    }
}

fn read_response(status: Option<u16>, body: Option<&[u8]>) -> Result<KeySet, String> {
    let status = status.ok_or("no response (connection failure or timeout)")?;
    if status != 200 {
        return Err(format!("the response status is {status}, not 200"));
    }
    let body = body.unwrap_or_default();
    if body.len() > MAX_JWKS_BYTES {
        return Err(format!(
            "the response is {} bytes; at most {MAX_JWKS_BYTES} are read",
            body.len()
        ));
    }
    let set = KeySet::parse(body).map_err(|e| format!("the JWK Set is refused: {e}"))?;
    if set.is_empty() {
        let mut reason = "the JWK Set holds no usable key".to_string();
        for key in &set.skipped {
            reason.push_str(&format!("; {key}"));
        }
        return Err(reason);
    }
    Ok(set)
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::bearer::bearer_token;
    use crate::auth::testkeys::{self, claims, token, Alg, Key, NOW};

    /// The header's token verified, as `BearerClaims` does for a request.
    fn verify_bearer(
        cache: &mut Verifier,
        authorization: Option<&str>,
        now: u64,
    ) -> Result<VerifiedToken, BearerRefusal> {
        let token = bearer_token(authorization).map_err(BearerRefusal::Invalid)?;
        cache.verify(token, now)
    }

    fn remote(refresh_seconds: u64) -> Verifier {
        Verifier::new(Arc::new(Verification {
            settings: VerifySettings::default(),
            keys: KeySource::Remote(RemoteJwks {
                cluster: "idp".into(),
                path: "/.well-known/jwks.json".into(),
                authority: "idp".into(),
                refresh_seconds,
            }),
        }))
    }

    fn jwks(keys: &[(Key, &str)]) -> Vec<u8> {
        let keys: Vec<_> = keys
            .iter()
            .map(|(key, kid)| key.jwk(kid, json!({})))
            .collect();
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    fn bearer(key: Key, kid: &str) -> String {
        let alg = if key == Key::P256 {
            Alg::ES256
        } else {
            Alg::RS256
        };
        let mut claims = claims();
        claims["exp"] = json!(NOW + 100_000);
        format!("Bearer {}", token(alg, key, Some(kid), &claims))
    }

    #[test]
    fn inline_keys_never_fetch() {
        let mut cache = Verifier::new(Arc::new(Verification {
            settings: VerifySettings::default(),
            keys: KeySource::Inline(Arc::new(testkeys::all_keys())),
        }));
        assert!(cache.remote().is_none());
        assert!(!cache.needs_fetch(NOW));
        assert!(!cache.on_unknown_kid(NOW));
        let verified = verify_bearer(&mut cache, Some(&bearer(Key::RsaA, "rsa-a")), NOW).unwrap();
        assert_eq!(verified.kid.as_deref(), Some("rsa-a"));
        assert_eq!(
            verify_bearer(&mut cache, Some(&bearer(Key::RsaA, "nope")), NOW),
            Err(BearerRefusal::Invalid(TokenError::UnknownKey))
        );
        assert!(!cache.needs_fetch(NOW + 1_000_000));
    }

    #[test]
    fn no_keys_yet_is_503_then_the_first_set_is_used() {
        let mut cache = remote(300);
        assert_eq!(cache.remote().unwrap().cluster, "idp");
        assert!(cache.keys().is_none());
        assert!(cache.needs_fetch(NOW));
        let token = bearer(Key::RsaA, "a");
        // A missing token is 401 whether or not keys are known.
        assert_eq!(
            verify_bearer(&mut cache, None, NOW),
            Err(BearerRefusal::Invalid(TokenError::Missing))
        );
        assert_eq!(
            verify_bearer(&mut cache, Some(&token), NOW),
            Err(BearerRefusal::KeysUnavailable {
                retry_after_seconds: 1
            })
        );
        cache.fetch_started(NOW);
        assert!(!cache.needs_fetch(NOW + 1), "one fetch at a time");
        assert_eq!(
            verify_bearer(&mut cache, Some(&token), NOW + 1),
            Err(BearerRefusal::KeysUnavailable {
                retry_after_seconds: 1
            })
        );
        let report = cache.on_fetch_response(NOW + 1, Some(200), Some(&jwks(&[(Key::RsaA, "a")])));
        assert_eq!(
            report,
            FetchReport::Updated {
                keys: 1,
                skipped: vec![]
            }
        );
        assert_eq!(report.to_string(), "JWKS updated: 1 key");
        verify_bearer(&mut cache, Some(&token), NOW + 2).unwrap();
        // The next fetch is due after refresh_seconds.
        assert!(!cache.needs_fetch(NOW + 300));
        assert!(cache.needs_fetch(NOW + 301));
    }

    #[test]
    fn failures_back_off_and_keep_the_last_good_set() {
        let mut cache = remote(300);
        let mut at = NOW;
        // Before any set: 1, 2, 4, ... seconds, capped.
        let mut delays = Vec::new();
        for _ in 0..8 {
            cache.fetch_started(at);
            match cache.on_fetch_response(at, None, None) {
                FetchReport::Failed {
                    retry_in_seconds,
                    kept_last_good,
                    reason,
                } => {
                    assert!(!kept_last_good);
                    assert!(reason.starts_with("no response"), "{reason}");
                    assert_eq!(cache.retry_after_seconds(at), retry_in_seconds as u32);
                    delays.push(retry_in_seconds);
                    assert!(!cache.needs_fetch(at + retry_in_seconds - 1));
                    assert!(cache.needs_fetch(at + retry_in_seconds));
                    at += retry_in_seconds;
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        cache.fetch_started(at);
        cache.on_fetch_response(at, Some(200), Some(&jwks(&[(Key::RsaA, "a")])));
        // Refresh failures keep the set in use.
        type Failure<'a> = (Option<u16>, Option<&'a [u8]>, &'a str);
        let failures: [Failure; 6] = [
            (
                Some(503),
                Some(b"busy"),
                "the response status is 503, not 200",
            ),
            (
                Some(200),
                Some(b"<html>"),
                "the JWK Set is refused: not valid JSON",
            ),
            (Some(200), None, "the JWK Set is refused: not valid JSON"),
            (
                Some(200),
                Some(br#"{"keys": []}"#),
                "the JWK Set holds no usable key",
            ),
            (
                Some(200),
                Some(br#"{"keys": [{"kty": "RSA", "use": "enc", "kid": "e"}]}"#),
                r#"the JWK Set holds no usable key; keys[0] (kid "e") not used: its use is "enc", not "sig""#,
            ),
            (
                Some(200),
                Some(br#"{"keys": [{"kty": "EC", "crv": "P-256", "d": "AA"}]}"#),
                "the JWK Set is refused: keys[0].d: the set holds a private key",
            ),
        ];
        for (status, body, expected) in failures {
            at += 400;
            assert!(cache.needs_fetch(at));
            cache.fetch_started(at);
            match cache.on_fetch_response(at, status, body) {
                report @ FetchReport::Failed {
                    kept_last_good: true,
                    retry_in_seconds: 1,
                    ..
                } => {
                    let text = report.to_string();
                    assert!(text.contains(expected), "{text}\nwant: {expected}");
                    assert!(
                        text.ends_with("keeping the last good set; next attempt in 1 s"),
                        "{text}"
                    );
                }
                other => panic!("{other:?}"),
            }
            verify_bearer(&mut cache, Some(&bearer(Key::RsaA, "a")), at).unwrap();
            // Recovered at once by the next good fetch.
            at += 1;
            cache.fetch_started(at);
            cache.on_fetch_response(at, Some(200), Some(&jwks(&[(Key::RsaA, "a")])));
        }
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        at += 400;
        match cache.on_fetch_response(at, Some(200), Some(&huge)) {
            FetchReport::Failed { reason, .. } => assert!(reason.contains("at most"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_never_exceeds_the_refresh_period() {
        let mut cache = remote(5);
        for expected in [1, 2, 4, 5, 5] {
            match cache.on_fetch_response(NOW, Some(500), None) {
                FetchReport::Failed {
                    retry_in_seconds, ..
                } => assert_eq!(retry_in_seconds, expected),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_unknown_kid_brings_the_refresh_forward_at_most_every_30_seconds() {
        let mut cache = remote(3600);
        cache.fetch_started(NOW);
        cache.on_fetch_response(NOW, Some(200), Some(&jwks(&[(Key::RsaA, "old")])));
        let rotated = bearer(Key::RsaB, "new");
        // Too soon after the last fetch: no early refresh.
        assert_eq!(
            verify_bearer(&mut cache, Some(&rotated), NOW + 10),
            Err(BearerRefusal::Invalid(TokenError::UnknownKey))
        );
        assert!(!cache.needs_fetch(NOW + 10));
        // Later, the unknown kid makes the fetch due at once.
        assert_eq!(
            verify_bearer(&mut cache, Some(&rotated), NOW + 40),
            Err(BearerRefusal::Invalid(TokenError::UnknownKey))
        );
        assert!(cache.needs_fetch(NOW + 40));
        cache.fetch_started(NOW + 40);
        // While it is under way, no other early refresh.
        assert!(!cache.on_unknown_kid(NOW + 41));
        cache.on_fetch_response(
            NOW + 41,
            Some(200),
            Some(&jwks(&[(Key::RsaA, "old"), (Key::RsaB, "new")])),
        );
        verify_bearer(&mut cache, Some(&rotated), NOW + 42).unwrap();
        // A flood of unknown kids: at most one fetch per 30 seconds.
        let mut fetches = 0;
        for second in 42..(42 + 300) {
            let now = NOW + second;
            let _ = verify_bearer(&mut cache, Some(&bearer(Key::P256, "forged")), now);
            if cache.needs_fetch(now) {
                fetches += 1;
                cache.fetch_started(now);
                cache.on_fetch_response(
                    now,
                    Some(200),
                    Some(&jwks(&[(Key::RsaA, "old"), (Key::RsaB, "new")])),
                );
            }
        }
        assert!(fetches <= 300 / EARLY_REFRESH_MIN_SECONDS, "{fetches}");
        assert!(fetches >= 9, "{fetches}");
    }

    #[test]
    fn a_lost_fetch_does_not_block_forever() {
        let mut cache = remote(300);
        cache.fetch_started(NOW);
        assert!(!cache.needs_fetch(NOW + IN_FLIGHT_GUARD_SECONDS - 1));
        assert!(cache.needs_fetch(NOW + IN_FLIGHT_GUARD_SECONDS));
    }
}
