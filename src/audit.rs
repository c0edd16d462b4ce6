//! The audit record: one JSON line per request, so that a reuse for another purpose can be
//! detected afterwards (CNIL recommendation: traceability).
//!
//! A record names who asked, for which purpose, under which policy (and its version), what
//! was decided and which fields were withheld or disguised. It never holds a token, a header
//! value, or anything of a body: field *paths* only, never values.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use crate::json::filter::PathTally;

/// What happened to the request, in the words of the audit and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    DeniedToken,
    DeniedScope,
    DeniedPurpose,
    DeniedRoute,
    /// The response could not be filtered and was replaced by a 502 (or the stream reset).
    FailedClosed,
    /// No policy covers the request and the configuration lets it through unfiltered.
    PassedUnfiltered,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Allowed,
        Outcome::DeniedToken,
        Outcome::DeniedScope,
        Outcome::DeniedPurpose,
        Outcome::DeniedRoute,
        Outcome::FailedClosed,
        Outcome::PassedUnfiltered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::DeniedToken => "denied_token",
            Outcome::DeniedScope => "denied_scope",
            Outcome::DeniedPurpose => "denied_purpose",
            Outcome::DeniedRoute => "denied_route",
            Outcome::FailedClosed => "failed_closed",
            Outcome::PassedUnfiltered => "passed_unfiltered",
        }
    }

    /// The outcome of a request refusal, from its problem type.
    pub fn of_denial(slug: &str) -> Outcome {
        match slug {
            "insufficient-scope" | "method-not-covered" => Outcome::DeniedScope,
            s if s.starts_with("purpose-") => Outcome::DeniedPurpose,
            "no-policy" => Outcome::DeniedRoute,
            "response-not-filterable" => Outcome::FailedClosed,
            _ => Outcome::DeniedToken,
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub time: SystemTime,
    pub request_id: Option<String>,
    pub route: Option<String>,
    pub policy: Option<String>,
    pub policy_hash: Option<String>,
    pub client: Option<String>,
    pub purpose: Option<String>,
    pub outcome: Outcome,
    /// Dry run: `outcome` is what enforcement would have done; nothing was withheld.
    pub dry_run: bool,
    pub status: Option<u16>,
    pub withheld: PathTally,
    pub transformed: PathTally,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl AuditRecord {
    pub fn new(time: SystemTime, outcome: Outcome) -> AuditRecord {
        AuditRecord {
            time,
            request_id: None,
            route: None,
            policy: None,
            policy_hash: None,
            client: None,
            purpose: None,
            outcome,
            dry_run: false,
            status: None,
            withheld: PathTally::default(),
            transformed: PathTally::default(),
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// The record as one JSON line (no trailing newline).
    pub fn to_json_line(&self) -> String {
        let record = json!({
            "audit": "finalite",
            "time": rfc3339(self.time),
            "request_id": self.request_id.as_deref().filter(|id| is_safe_id(id)),
            "route": self.route,
            "policy": self.policy,
            "policy_hash": self.policy_hash,
            "client": self.client,
            "purpose": self.purpose,
            "decision": self.outcome.as_str(),
            "dry_run": self.dry_run,
            "status": self.status,
            "withheld": tally_json(&self.withheld),
            "transformed": tally_json(&self.transformed),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
        });
        record.to_string()
    }
}

fn tally_json(tally: &PathTally) -> Value {
    let paths: Map<String, Value> = tally
        .counts
        .iter()
        .map(|(p, c)| (p.clone(), json!(c)))
        .collect();
    json!({"count": tally.total(), "paths": paths, "more": tally.overflow})
}

/// A request id is copied only when it looks like one (a client may send anything).
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// UTC, millisecond precision: `2026-11-23T10:40:00.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_123)),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_430_400)),
            "2026-11-23T10:40:00.000Z"
        );
    }

    #[test]
    fn outcomes_from_problem_types() {
        assert_eq!(Outcome::of_denial("invalid-token"), Outcome::DeniedToken);
        assert_eq!(
            Outcome::of_denial("client-certificate-required"),
            Outcome::DeniedToken
        );
        assert_eq!(
            Outcome::of_denial("insufficient-scope"),
            Outcome::DeniedScope
        );
        assert_eq!(
            Outcome::of_denial("purpose-not-accepted"),
            Outcome::DeniedPurpose
        );
        assert_eq!(Outcome::of_denial("no-policy"), Outcome::DeniedRoute);
        assert_eq!(
            Outcome::of_denial("response-not-filterable"),
            Outcome::FailedClosed
        );
    }

    #[test]
    fn a_record_is_one_exact_json_line() {
        let mut record = AuditRecord::new(
            UNIX_EPOCH + Duration::from_secs(1_795_430_400),
            Outcome::Allowed,
        );
        record.request_id = Some("5f1c-aa".into());
        record.route = Some("patients".into());
        record.policy = Some("patients".into());
        record.policy_hash = Some("0123456789ab".into());
        record.client = Some("partner-billing".into());
        record.purpose = Some("billing".into());
        record.status = Some(200);
        record.bytes_in = 420;
        record.bytes_out = 96;
        assert_eq!(
            record.to_json_line(),
            r#"{"audit":"finalite","bytes_in":420,"bytes_out":96,"client":"partner-billing","decision":"allowed","dry_run":false,"policy":"patients","policy_hash":"0123456789ab","purpose":"billing","request_id":"5f1c-aa","route":"patients","status":200,"time":"2026-11-23T10:40:00.000Z","transformed":{"count":0,"more":0,"paths":{}},"withheld":{"count":0,"more":0,"paths":{}}}"#
        );
    }

    #[test]
    fn a_suspicious_request_id_is_not_copied() {
        let mut record = AuditRecord::new(UNIX_EPOCH, Outcome::DeniedRoute);
        record.request_id = Some("x\"} injected".into());
        assert!(record.to_json_line().contains(r#""request_id":null"#));
    }
}
