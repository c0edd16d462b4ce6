//! The audit record: one JSON line per request, so that a reuse for another purpose can be
//! detected afterwards (CNIL recommendation: traceability).
//!
//! A record names who asked, for which purpose, under which policy (and its version), what
//! was decided and which fields were withheld or disguised. It never holds a token, a header
//! value, or anything of a body: field *paths* only, never values.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::decision::RequestDecision;
use crate::denial::DenialKind;
use crate::json::filter::{FilterStats, PathTally};
use crate::policy::compartment;
use crate::policy::rules::FieldRules;
use crate::policy::{CompiledConfig, Policy};
use crate::request::Verdict;

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

    /// The outcome of a refusal of this kind.
    pub fn of(kind: DenialKind) -> Outcome {
        match kind {
            DenialKind::InvalidToken
            | DenialKind::ClientCertificateRequired
            | DenialKind::KeysUnavailable => Outcome::DeniedToken,
            DenialKind::InsufficientScope
            | DenialKind::MethodNotCovered
            | DenialKind::OutsidePatientCompartment
            | DenialKind::FhirInteractionNotAllowed
            | DenialKind::ResourceNotGranted => Outcome::DeniedScope,
            DenialKind::PurposeUndeclared
            | DenialKind::PurposeNotAuthorised
            | DenialKind::PurposeNotAccepted
            | DenialKind::PurposeAmbiguous => Outcome::DeniedPurpose,
            DenialKind::NoPolicy => Outcome::DeniedRoute,
            DenialKind::ResponseNotFilterable => Outcome::FailedClosed,
        }
    }

    /// The outcome of a request's decision.
    pub fn of_decision(decision: &RequestDecision) -> Outcome {
        match decision {
            RequestDecision::Deny(denial) => Outcome::of(denial.kind()),
            RequestDecision::PassUnfiltered => Outcome::PassedUnfiltered,
            RequestDecision::Allow(_) => Outcome::Allowed,
        }
    }
}

/// What is learnt of a request as it passes through the proxy, from which its record is
/// written when it ends: the adapter fills it callback by callback.
#[derive(Debug, Default)]
pub struct Trace {
    /// `None` until a decision is made: a request finalite never decided on has no record.
    pub outcome: Option<Outcome>,
    pub dry_run: bool,
    pub route: Option<String>,
    /// Index in the configuration's policies.
    pub policy: Option<usize>,
    pub purpose: Option<String>,
    pub client: Option<String>,
    pub request_id: Option<String>,
    pub stats: FilterStats,
    /// Upstream body bytes as received (before decoding) and as sent.
    pub sizes: Option<(u64, u64)>,
}

impl Trace {
    /// What the request's decision tells the record.
    pub fn record_verdict(
        &mut self,
        verdict: &Verdict,
        route: Option<String>,
        request_id: Option<String>,
    ) {
        self.route = route;
        self.request_id = request_id;
        self.policy = verdict.policy;
        self.purpose = verdict.purpose.clone();
        self.client = verdict.client.clone();
        self.dry_run = verdict.dry_run;
    }

    /// How a warning names the request: its id, as the audit record carries it, so that an
    /// operator can match the two; `-` when the request had no id that looks like one (a
    /// client may send anything, and a log line must not carry it).
    pub fn request_label(&self) -> &str {
        self.request_id
            .as_deref()
            .filter(|id| is_safe_id(id))
            .unwrap_or("-")
    }

    /// The record of the request, if a decision was made on it.
    pub fn into_record(
        self,
        time: SystemTime,
        config: &CompiledConfig,
        status: Option<u16>,
    ) -> Option<AuditRecord> {
        let mut record = AuditRecord::new(time, self.outcome?);
        let policy = self.policy.and_then(|i| config.policies.get(i));
        record.request_id = self.request_id;
        record.route = self.route;
        record.policy = policy.map(|p| p.name.clone());
        record.policy_hash = policy.map(|p| p.hash.clone());
        record.client = self.client;
        record.purpose = self.purpose;
        record.dry_run = self.dry_run;
        record.status = status;
        let (withheld, transformed) = match policy {
            Some(policy) => (
                redact(self.stats.withheld, policy),
                redact(self.stats.transformed, policy),
            ),
            None => (self.stats.withheld, self.stats.transformed),
        };
        record.withheld = withheld;
        record.transformed = transformed;
        record.withheld_resources = self.stats.resources.map(redact_types);
        if let Some((received, sent)) = self.sizes {
            record.bytes_in = received;
            record.bytes_out = sent;
        }
        Some(record)
    }
}

/// The tally with each key of its paths that no rule of the policy names replaced by `*`.
///
/// A key can be data (a surname or an id used as a map key, met when a `**` rule makes the
/// engine look inside an object), and the record must not carry body content: a key stays
/// only when it is a literal segment of some rule path of the policy (of any of its
/// purposes: a name the operator wrote, which any purpose could meet) or a type its typed
/// rules list (or, when objects are typed by `resourceType`, a FHIR R4 resource type: a
/// public vocabulary; under SMART scopes, `total`, which they withhold from every Bundle),
/// `*` stays `*`, and every other key becomes `*`. Paths that become
/// the same are counted together.
fn redact(tally: PathTally, policy: &Policy) -> PathTally {
    let rules: Vec<&FieldRules> = policy
        .purposes
        .values()
        .filter_map(|purpose| purpose.body.as_deref())
        .collect();
    // Under SMART scopes every Bundle's `total` is withheld: a FHIR element name, not data.
    let smart = policy.fhir.as_ref().is_some_and(|f| f.smart_scopes);
    let named = |segment: &str| -> bool {
        if segment == "*" || segment.is_empty() || (smart && segment == "total") {
            return true;
        }
        let key = if segment.starts_with('"') {
            match serde_json::from_str::<String>(segment) {
                Ok(key) => key,
                Err(_) => return false,
            }
        } else {
            segment.to_string()
        };
        rules.iter().any(|r| {
            r.names_key(key.as_bytes())
                || r.names_type(key.as_bytes())
                || (r.type_key() == Some(b"resourceType") && compartment::is_resource_type(&key))
        })
    };
    if tally
        .counts
        .iter()
        .all(|(path, _)| path_segments(path).all(&named))
    {
        return tally;
    }
    let counts = tally.counts.into_iter().map(|(path, count)| {
        let redacted: Vec<&str> = path_segments(&path)
            .map(|segment| if named(segment) { segment } else { "*" })
            .collect();
        (redacted.join("."), count)
    });
    PathTally::from_counts(counts, tally.overflow)
}

/// The tally of withheld resources with every name that is not a FHIR R4 resource type
/// written `*`: a type name from a body is data unless it is the public vocabulary.
fn redact_types(tally: PathTally) -> PathTally {
    if tally
        .counts
        .iter()
        .all(|(t, _)| t == "*" || compartment::is_resource_type(t))
    {
        return tally;
    }
    let counts = tally.counts.into_iter().map(|(t, count)| {
        if compartment::is_resource_type(&t) {
            (t, count)
        } else {
            ("*".to_string(), count)
        }
    });
    PathTally::from_counts(counts, tally.overflow)
}

/// The segments of a path in policy syntax as written (`a`, `*`, a quoted `"a.b"`), split
/// on the dots outside quotes.
fn path_segments(path: &str) -> impl Iterator<Item = &str> {
    let bytes = path.as_bytes();
    let mut start = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut at = start;
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            while at < bytes.len() && bytes[at] != b'"' {
                at += if bytes[at] == b'\\' { 2 } else { 1 };
            }
            at = (at + 1).min(bytes.len());
        }
        while at < bytes.len() && bytes[at] != b'.' {
            at += 1;
        }
        // `at` is at a dot, a quote's end or the end: ASCII, so a character boundary.
        let segment = path.get(start..at).unwrap_or_default();
        if at >= bytes.len() {
            done = true;
        } else {
            start = at + 1;
        }
        Some(segment)
    })
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
    /// Under SMART scopes: the resources withheld because no scope of the caller grants
    /// them, counted by resource type (`*`: not a FHIR R4 resource type, or no type where
    /// a resource stands). Apart from `withheld`, the fields the purpose's rules withhold.
    /// `None` (and no member in the line) on a policy without SMART scopes.
    pub withheld_resources: Option<PathTally>,
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
            withheld_resources: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// The record as one JSON line (no trailing newline).
    ///
    /// Written straight into one string, members in the order serde_json's sorted map gives
    /// them and strings escaped as serde_json escapes them: building a `serde_json::Value`
    /// tree first (a map per tally, a string per path) cost more instructions than filtering
    /// a 1 KiB body, once per request.
    pub fn to_json_line(&self) -> String {
        let paths = |t: &PathTally| t.counts.iter().map(|(p, _)| p.len() + 8).sum::<usize>();
        let mut out = String::with_capacity(400 + paths(&self.withheld) + paths(&self.transformed));
        out.push_str(r#"{"audit":"finalite","bytes_in":"#);
        push_u64(&mut out, self.bytes_in);
        out.push_str(r#","bytes_out":"#);
        push_u64(&mut out, self.bytes_out);
        out.push_str(r#","client":"#);
        push_opt_str(&mut out, self.client.as_deref());
        out.push_str(r#","decision":""#);
        out.push_str(self.outcome.as_str());
        out.push_str(r#"","dry_run":"#);
        out.push_str(if self.dry_run { "true" } else { "false" });
        out.push_str(r#","policy":"#);
        push_opt_str(&mut out, self.policy.as_deref());
        out.push_str(r#","policy_hash":"#);
        push_opt_str(&mut out, self.policy_hash.as_deref());
        out.push_str(r#","purpose":"#);
        push_opt_str(&mut out, self.purpose.as_deref());
        out.push_str(r#","request_id":"#);
        push_opt_str(
            &mut out,
            self.request_id.as_deref().filter(|id| is_safe_id(id)),
        );
        out.push_str(r#","route":"#);
        push_opt_str(&mut out, self.route.as_deref());
        out.push_str(r#","status":"#);
        match self.status {
            Some(status) => push_u64(&mut out, status.into()),
            None => out.push_str("null"),
        }
        out.push_str(r#","time":""#);
        write_rfc3339(&mut out, self.time);
        out.push_str(r#"","transformed":"#);
        push_tally(&mut out, &self.transformed);
        out.push_str(r#","withheld":"#);
        push_tally(&mut out, &self.withheld);
        if let Some(resources) = &self.withheld_resources {
            out.push_str(r#","withheld_resources":"#);
            push_tally(&mut out, resources);
        }
        out.push('}');
        out
    }
}

/// `{"count":N,"more":N,"paths":{...}}`: the paths come sorted from the tally, as
/// serde_json's map would sort them.
fn push_tally(out: &mut String, tally: &PathTally) {
    out.push_str(r#"{"count":"#);
    push_u64(out, tally.total());
    out.push_str(r#","more":"#);
    push_u64(out, tally.overflow);
    out.push_str(r#","paths":{"#);
    for (i, (path, count)) in tally.counts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, path);
        out.push(':');
        push_u64(out, *count);
    }
    out.push_str("}}");
}

fn push_u64(out: &mut String, n: u64) {
    if n < 10 {
        // Most counts of a tally are 1.
        out.push(char::from(b'0' + n as u8));
        return;
    }
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: never the empty fallback.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

fn push_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        Some(value) => push_str(out, value),
        None => out.push_str("null"),
    }
}

/// A JSON string literal, escaped exactly as serde_json escapes it: `"` and `\`, the short
/// forms `\b \t \n \f \r`, other control characters as `\u00xx` (lower-case hex), and
/// nothing else (non-ASCII text and DEL as they are).
fn push_str(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = value.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        out.push_str(&value[start..i]);
        match bytes[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0c => out.push_str("\\f"),
            0x0d => out.push_str("\\r"),
            b => {
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        }
        start = i + 1;
    }
    out.push_str(&value[start..]);
    out.push('"');
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The first byte from `from` on that [`push_str`] escapes. Eight bytes per step (paths and
/// names rarely hold one): a byte is below 0x20, `"` or `\` when the classic "has a zero
/// byte" test fires on the word, on the word XOR `"`, or on the word XOR `\`.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hit = below(w, 0x20) | below(w ^ (ONES * 0x22), 1) | below(w ^ (ONES * 0x5c), 1);
        if hit != 0 {
            // The lowest flagged byte is exact (a borrow only runs upwards, past it).
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| needs_escape(b))
        .map(|i| at + i)
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
    let mut out = String::with_capacity(24);
    write_rfc3339(&mut out, time);
    out
}

fn write_rfc3339(out: &mut String, time: SystemTime) {
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
    // `{year:04}`: the year of a `SystemTime` after 1970 is positive; past 9999 it simply
    // takes more digits.
    let year = u64::try_from(year).unwrap_or(0);
    push_padded(out, year, 4);
    out.push('-');
    push_padded(out, month as u64, 2);
    out.push('-');
    push_padded(out, day as u64, 2);
    out.push('T');
    push_padded(out, rem / 3_600, 2);
    out.push(':');
    push_padded(out, rem % 3_600 / 60, 2);
    out.push(':');
    push_padded(out, rem % 60, 2);
    out.push('.');
    push_padded(out, since.subsec_millis().into(), 3);
    out.push('Z');
}

/// `n` in decimal, zero-padded to at least `width` digits (as `{n:0width$}`).
fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = 1;
    let mut rest = n / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    for _ in digits..width {
        out.push('0');
    }
    push_u64(out, n);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_trace_becomes_the_record_of_its_decision() {
        let config = CompiledConfig::load(
            br#"{"policies": {"open": {"auth": "none", "default_purpose": "stats",
                 "purposes": {"stats": {"default": "keep"}}}}}"#,
            &|_| None,
        )
        .unwrap();
        let time = UNIX_EPOCH + Duration::from_secs(1);
        assert_eq!(
            Trace::default().into_record(time, &config, Some(200)),
            None,
            "no decision, no record"
        );
        let trace = Trace {
            outcome: Some(Outcome::Allowed),
            dry_run: true,
            route: Some("r".into()),
            policy: Some(0),
            purpose: Some("stats".into()),
            client: Some("c".into()),
            request_id: Some("id".into()),
            stats: FilterStats::default(),
            sizes: Some((10, 4)),
        };
        let record = trace.into_record(time, &config, Some(200)).unwrap();
        let mut expected = AuditRecord::new(time, Outcome::Allowed);
        expected.request_id = Some("id".into());
        expected.route = Some("r".into());
        expected.policy = Some("open".into());
        expected.policy_hash = Some(config.policies[0].hash.clone());
        expected.client = Some("c".into());
        expected.purpose = Some("stats".into());
        expected.dry_run = true;
        expected.status = Some(200);
        expected.bytes_in = 10;
        expected.bytes_out = 4;
        assert_eq!(record, expected);
    }

    #[test]
    fn path_segments_split_on_dots_outside_quotes() {
        fn split(p: &str) -> Vec<&str> {
            path_segments(p).collect()
        }
        assert_eq!(split("a.b.c"), ["a", "b", "c"]);
        assert_eq!(split(""), [""]);
        assert_eq!(split("*"), ["*"]);
        assert_eq!(split(r#""a.b".c"#), [r#""a.b""#, "c"]);
        assert_eq!(split(r#"x."q\".d".*"#), ["x", r#""q\".d""#, "*"]);
        assert_eq!(split(r#"x."unterminated"#), ["x", r#""unterminated"#]);
    }

    #[test]
    fn keys_that_are_data_are_written_as_stars() {
        let config = CompiledConfig::load(
            br#"{"policies": {"p": {"purposes": {
                "care": {"default": "keep", "fields": {"**.notes": "drop"}},
                "billing": {"fields": {"id": "keep", "name": "keep", "\"a.b\".c": "keep"}},
                "research": {"fields": {"id": {"truncate": 2}, "**.ssn": "drop",
                                        "byName.*.code": "keep"}}}}}}"#,
            &|_| None,
        )
        .unwrap();
        let policy = &config.policies[0];
        let tally = PathTally::from_counts(
            [
                ("name.family", 2),
                ("name.given", 1),
                ("phone", 1),
                ("ssn", 1),
                // Keys that are data: a surname and an id as map keys.
                ("byName.Martin.code", 1),
                ("byName.Martin.display", 1),
                ("byName.Dubois.display", 2),
                ("byId.*", 4),
                ("\"a.b\".c", 1),
                ("\"a.b\".Martin", 1),
                ("notes", 1),
                ("", 1),
            ]
            .into_iter()
            .map(|(p, c)| (p.to_string(), c)),
            3,
        );
        let redacted = redact(tally.clone(), policy);
        let counts: Vec<(&str, u64)> = redacted
            .counts
            .iter()
            .map(|(p, c)| (p.as_str(), *c))
            .collect();
        assert_eq!(
            counts,
            [
                ("", 1),
                ("\"a.b\".*", 1),
                ("\"a.b\".c", 1),
                ("*", 1),
                ("*.*", 4),
                ("byName.*.*", 3),
                ("byName.*.code", 1),
                ("name.*", 3),
                ("notes", 1),
                ("ssn", 1),
            ]
        );
        assert_eq!(redacted.overflow, 3);
        assert_eq!(redacted.total(), tally.total());
        // No body key survives.
        for (path, _) in &redacted.counts {
            for data in [
                "Martin", "Dubois", "family", "given", "phone", "display", "byId",
            ] {
                assert!(!path.contains(data), "{path}");
            }
        }
    }

    #[test]
    fn type_names_stay_when_listed_or_fhir_resource_types() {
        let typed = |type_key: &str| {
            let config = format!(
                r#"{{"policies": {{"p": {{"type_key": "{type_key}", "purposes": {{"r": {{
                    "types": {{"Patient": {{"fields": {{"gender": "keep"}}}}}}}}}}}}}}}}"#
            );
            CompiledConfig::load(config.as_bytes(), &|_| None).unwrap()
        };
        let tally = || {
            PathTally::from_counts(
                [
                    ("Patient.address.city", 1),
                    ("Practitioner", 2),
                    ("Martin", 1),
                    ("Patient.Martin", 1),
                ]
                .into_iter()
                .map(|(p, c)| (p.to_string(), c)),
                0,
            )
        };
        let paths = |config: &CompiledConfig| -> Vec<String> {
            redact(tally(), &config.policies[0])
                .counts
                .into_iter()
                .map(|(p, c)| format!("{p}={c}"))
                .collect()
        };
        // FHIR: listed types and R4 resource types are named, any other key is data.
        assert_eq!(
            paths(&typed("resourceType")),
            ["*=1", "Patient.*=1", "Patient.*.*=1", "Practitioner=2"]
        );
        // Another type key: only the types the policy lists.
        assert_eq!(
            paths(&typed("kind")),
            ["*=3", "Patient.*=1", "Patient.*.*=1"]
        );
    }

    #[test]
    fn a_record_names_only_the_keys_the_policy_names() {
        let config = CompiledConfig::load(
            br#"{"policies": {"p": {"purposes": {"u": {"fields": {"id": "keep", "**.ssn": "drop"}}}}}}"#,
            &|_| None,
        )
        .unwrap();
        let stats = FilterStats {
            withheld: PathTally::from_counts(
                [("Dupont.ssn".to_string(), 1), ("Dupont.age".to_string(), 1)],
                0,
            ),
            transformed: PathTally::from_counts([("2840375123456".to_string(), 1)], 0),
            ..FilterStats::default()
        };
        let trace = Trace {
            outcome: Some(Outcome::Allowed),
            policy: Some(0),
            stats,
            ..Trace::default()
        };
        let record = trace.into_record(UNIX_EPOCH, &config, Some(200)).unwrap();
        let line = record.to_json_line();
        assert!(
            line.contains(r#""withheld":{"count":2,"more":0,"paths":{"*.*":1,"*.ssn":1}}"#),
            "{line}"
        );
        assert!(
            line.contains(r#""transformed":{"count":1,"more":0,"paths":{"*":1}}"#),
            "{line}"
        );
        assert!(
            !line.contains("Dupont") && !line.contains("2840375123456"),
            "{line}"
        );
    }

    #[test]
    fn withheld_resources_are_counted_by_fhir_type_apart_from_fields() {
        let config = CompiledConfig::load(
            br#"{"policies": {"f": {"fhir": {"base": "/fhir", "smart_scopes": true},
                 "purposes": {"care": {"default": "keep"}}}}}"#,
            &|_| None,
        )
        .unwrap();
        let trace = |resources: Option<PathTally>| Trace {
            outcome: Some(Outcome::Allowed),
            policy: Some(0),
            stats: FilterStats {
                withheld: PathTally::from_counts([("total".to_string(), 1)], 0),
                resources,
                ..FilterStats::default()
            },
            ..Trace::default()
        };
        let resources = PathTally::from_counts(
            [("Condition", 2), ("Patient", 1), ("Martin", 1), ("*", 1)]
                .into_iter()
                .map(|(t, c)| (t.to_string(), c)),
            0,
        );
        let line = trace(Some(resources))
            .into_record(UNIX_EPOCH, &config, Some(200))
            .unwrap()
            .to_json_line();
        assert!(
            line.ends_with(r#""withheld":{"count":1,"more":0,"paths":{"total":1}},"withheld_resources":{"count":5,"more":0,"paths":{"*":2,"Condition":2,"Patient":1}}}"#),
            "{line}"
        );
        // No SMART filtering, no member.
        let line = trace(None)
            .into_record(UNIX_EPOCH, &config, Some(200))
            .unwrap()
            .to_json_line();
        assert!(!line.contains("withheld_resources"), "{line}");
    }

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
    fn every_kind_has_its_outcome() {
        let outcomes: Vec<(&str, Outcome)> = DenialKind::ALL
            .into_iter()
            .map(|k| (k.slug(), Outcome::of(k)))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("invalid-token", Outcome::DeniedToken),
                ("client-certificate-required", Outcome::DeniedToken),
                ("keys-unavailable", Outcome::DeniedToken),
                ("insufficient-scope", Outcome::DeniedScope),
                ("method-not-covered", Outcome::DeniedScope),
                ("purpose-undeclared", Outcome::DeniedPurpose),
                ("purpose-not-authorised", Outcome::DeniedPurpose),
                ("purpose-not-accepted", Outcome::DeniedPurpose),
                ("purpose-ambiguous", Outcome::DeniedPurpose),
                ("no-policy", Outcome::DeniedRoute),
                ("response-not-filterable", Outcome::FailedClosed),
                ("outside-patient-compartment", Outcome::DeniedScope),
                ("fhir-interaction-not-allowed", Outcome::DeniedScope),
                ("resource-not-granted", Outcome::DeniedScope),
            ]
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

    /// The line as it was first built, through a `serde_json::Value`: the direct writer must
    /// produce exactly these bytes.
    fn through_serde_json(record: &AuditRecord) -> String {
        use serde_json::{json, Map, Value};
        let tally = |tally: &PathTally| {
            let paths: Map<String, Value> = tally
                .counts
                .iter()
                .map(|(p, c)| (p.clone(), json!(c)))
                .collect();
            json!({"count": tally.total(), "paths": paths, "more": tally.overflow})
        };
        let mut line = json!({
            "audit": "finalite",
            "time": rfc3339(record.time),
            "request_id": record.request_id.as_deref().filter(|id| is_safe_id(id)),
            "route": record.route,
            "policy": record.policy,
            "policy_hash": record.policy_hash,
            "client": record.client,
            "purpose": record.purpose,
            "decision": record.outcome.as_str(),
            "dry_run": record.dry_run,
            "status": record.status,
            "withheld": tally(&record.withheld),
            "transformed": tally(&record.transformed),
            "bytes_in": record.bytes_in,
            "bytes_out": record.bytes_out,
        });
        if let Some(resources) = &record.withheld_resources {
            line["withheld_resources"] = tally(resources);
        }
        line.to_string()
    }

    #[test]
    fn the_direct_line_is_serde_jsons_line() {
        let awkward = "q\"uote \\ back\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f} é 😀 </script>";
        let mut full = AuditRecord::new(
            UNIX_EPOCH + Duration::from_millis(253_402_300_799_999),
            Outcome::FailedClosed,
        );
        full.request_id = Some("a-b_c.d:e".into());
        full.route = Some(awkward.into());
        full.policy = Some("pölicy".into());
        full.policy_hash = Some(String::new());
        full.client = Some(awkward.into());
        full.purpose = Some("research".into());
        full.dry_run = true;
        full.status = Some(u16::MAX);
        full.bytes_in = u64::MAX;
        full.bytes_out = 0;
        full.withheld = PathTally::from_counts(
            [
                ("entry.resource.name", 3),
                ("a", 1),
                ("B", 1 << 40),
                (awkward, 2),
                ("", 7),
            ]
            .into_iter()
            .map(|(p, c)| (p.to_string(), c)),
            12,
        );
        full.transformed = PathTally::from_counts([("id".to_string(), 10)], 0);
        full.withheld_resources = Some(PathTally::from_counts(
            [("Condition".to_string(), 2), ("*".to_string(), 1)],
            0,
        ));
        let mut records = vec![full];
        for (i, outcome) in Outcome::ALL.into_iter().enumerate() {
            let mut record = AuditRecord::new(
                UNIX_EPOCH + Duration::from_millis(1_795_430_400_000 + i as u64 * 86_399_999),
                outcome,
            );
            record.request_id = Some(["", "x y", "ok-1"][i % 3].into());
            record.status = (i % 2 == 0).then_some(200 + i as u16);
            records.push(record);
        }
        for record in &records {
            assert_eq!(record.to_json_line(), through_serde_json(record));
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        for text in [every_ascii.as_str(), "", "plain", "é\u{2028}\u{fffd}"] {
            let mut out = String::new();
            push_str(&mut out, text);
            assert_eq!(out, serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn the_word_scan_finds_the_first_byte_to_escape() {
        // Every byte value at every position of a window wider than a word, after every
        // other byte value (a borrow from a lower byte must not hide or invent a hit).
        for special in 0u8..=255 {
            for before in [0u8, 0x1f, 0x20, 0x21, 0x22, 0x5c, 0x7f, 0x80, 0xff] {
                for at in 0..19 {
                    let mut bytes = vec![b'a'; 19];
                    bytes[at] = special;
                    if at > 0 {
                        bytes[at - 1] = before;
                    }
                    for from in [0, 1, 3, 8] {
                        let expected = (from..bytes.len()).find(|&i| needs_escape(bytes[i]));
                        assert_eq!(next_escape(&bytes, from), expected, "{bytes:?} {from}");
                    }
                }
            }
        }
    }

    #[test]
    fn times_before_the_epoch_and_far_ahead() {
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(253_402_300_799_999)),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(253_402_300_800)),
            "10000-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn a_suspicious_request_id_is_not_copied() {
        let mut record = AuditRecord::new(UNIX_EPOCH, Outcome::DeniedRoute);
        record.request_id = Some("x\"} injected".into());
        assert!(record.to_json_line().contains(r#""request_id":null"#));
    }

    #[test]
    fn a_warning_names_the_request_as_its_record_does() {
        let mut trace = Trace::default();
        assert_eq!(trace.request_label(), "-");
        trace.request_id = Some("5f1c0d2e-8a9b-4c3d".into());
        assert_eq!(trace.request_label(), "5f1c0d2e-8a9b-4c3d");
        for hostile in ["a b", "x\n[critical] forged", "", &"x".repeat(129)] {
            trace.request_id = Some(hostile.to_string());
            assert_eq!(trace.request_label(), "-", "{hostile:?}");
        }
    }
}
