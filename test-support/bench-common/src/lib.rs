//! What every engine benchmark shares, without finalite: the FHIR-like Bundle generator,
//! the real FHIR input ([`fhir`]), the policies, the two baselines that do finalite's job
//! another way ([`naive`], [`scanner`]) and the one that only validates
//! ([`validate_and_pass`]), with the proxy-wasm side of their Envoy filters
//! ([`whole_body_filter`], feature `proxy-wasm`).
//!
//! A crate apart from `finalite-test-support` (which re-exports it and adds the engine runs)
//! because the baselines' Envoy filters must not link finalite: its proxy-wasm entry point
//! would clash with theirs, and Cargo unifies a dependency's features across a workspace
//! build, so a feature of one crate could not keep finalite out.

pub mod fhir;
pub mod naive;
pub mod scanner;
#[cfg(feature = "proxy-wasm")]
pub mod whole_body_filter;

/// The body sizes measured: 1 KiB, 64 KiB, 1 MiB.
pub const SIZES: [(usize, &str); 3] = [(1 << 10, "1KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

/// The sizes of the real FHIR input measured ([`fhir::fhir_bundle`]): about 64 KiB and 1 MiB.
pub const FHIR_SIZES: [(usize, &str); 2] = [(64 << 10, "64KiB"), (1 << 20, "1MiB")];

pub use fhir::{fhir_bundle, FHIR_TYPED};

/// The validate-and-pass baseline: the body validated whole with serde_json (no tree built,
/// `IgnoredAny`) and handed back unchanged; `None` if it is not JSON. What the cheapest
/// filter that still refuses malformed JSON costs: finalite does that and filters.
pub fn validate_and_pass(body: &[u8]) -> Option<Vec<u8>> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    Some(body.to_vec())
}

/// Bytes handed to the engine at a time (Envoy delivers bodies in chunks of this order).
pub const CHUNK: usize = 64 << 10;

/// The 32-byte pseudonymisation key of the benchmarks (a fixed test value).
pub const PSEUDONYM_KEY: &[u8; 32] = b"bench-key-0123456789abcdefghijkl";

/// A small deterministic generator (xorshift64*), so every run measures the same bytes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FAMILY: &[&str] = &[
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Lefèvre",
    "Müller",
    "Schmidt",
    "García",
    "Fernández",
    "O'Brien",
    "Nguyễn",
    "Kowalski",
];
const GIVEN: &[&str] = &[
    "Léa", "Anne", "Jean", "Chloé", "Hugo", "Zoé", "Lucas", "Inès", "Noah", "Manon", "Björn",
    "José", "Aoife", "Łukasz",
];
const CITY: &[&str] = &[
    "Lyon",
    "Paris",
    "Marseille",
    "Saint-Étienne",
    "Besançon",
    "Nîmes",
    "Lille",
    "Nantes",
];
const STREET: &[&str] = &[
    "rue de la République",
    "avenue Jean Jaurès",
    "boulevard Voltaire",
    "place Bellecour",
    "chemin des Écoliers",
    "impasse du Moulin",
];
const CODES: &[(&str, &str)] = &[
    ("E11.9", "Diabète de type 2, sans complication"),
    ("I10", "Hypertension essentielle (primitive)"),
    ("J45.909", "Asthme, sans précision"),
    ("M54.5", "Lombalgie basse"),
    ("F32.1", "Épisode dépressif moyen"),
];

/// A JSON string literal (quotes and escapes as serde_json writes them).
fn string(out: &mut String, text: &str) {
    out.push_str(&serde_json::to_string(text).expect("a string serialises"));
}

fn member(out: &mut String, key: &str) {
    string(out, key);
    out.push(':');
}

/// One Bundle entry: a Patient resource, FHIR-shaped, with names, identifiers (one `ssn`),
/// contacts, addresses, extensions, a narrative with escapes and non-ASCII text, numbers.
fn entry(out: &mut String, rng: &mut Rng, n: u64) {
    let id = format!("pat-{:08x}", rng.next_u64() as u32);
    let family = rng.pick(FAMILY);
    let given = [rng.pick(GIVEN), rng.pick(GIVEN)];
    let city = rng.pick(CITY);
    let (code, display) = CODES[rng.below(CODES.len() as u64) as usize];
    out.push_str("{\"fullUrl\":");
    string(out, &format!("https://fhir.example.org/Patient/{id}"));
    out.push_str(",\"resource\":{\"resourceType\":\"Patient\",");
    member(out, "id");
    string(out, &id);
    out.push_str(",\"meta\":{\"versionId\":\"");
    out.push_str(&(1 + rng.below(9)).to_string());
    out.push_str("\",\"lastUpdated\":\"2024-0");
    out.push_str(&(1 + rng.below(9)).to_string());
    out.push_str("-1");
    out.push_str(&rng.below(10).to_string());
    out.push_str("T10:2");
    out.push_str(&rng.below(10).to_string());
    out.push_str(":00.000+02:00\",\"profile\":[\"http://interopsante.org/fhir/StructureDefinition/FrPatient\"]},");
    out.push_str("\"text\":{\"status\":\"generated\",\"div\":");
    string(
        out,
        &format!(
            "<div xmlns=\"http://www.w3.org/1999/xhtml\">\n  <p><b>{} {}</b>, né(e) à {}</p>\n  <p>Dossier n° {n}</p>\n</div>",
            given[0], family, city
        ),
    );
    out.push_str(
        "},\"identifier\":[{\"use\":\"official\",\"system\":\"urn:oid:1.2.250.1.213.1.4.8\",",
    );
    member(out, "value");
    string(
        out,
        &format!("{}", 1_000_000_000_000 + rng.below(8_999_999_999_999)),
    );
    out.push_str("},{\"use\":\"usual\",\"system\":\"https://hopital.example.org/ipp\",\"value\":");
    string(out, &format!("IPP{:07}", rng.below(10_000_000)));
    out.push_str("}],\"active\":");
    out.push_str(if rng.below(10) > 0 { "true" } else { "false" });
    out.push_str(",\"name\":[{\"use\":\"official\",\"family\":");
    string(out, family);
    out.push_str(",\"given\":[");
    string(out, given[0]);
    out.push(',');
    string(out, given[1]);
    out.push_str("],\"prefix\":[");
    string(out, if rng.below(2) == 0 { "Mme" } else { "M." });
    out.push_str("]}],\"telecom\":[{\"system\":\"phone\",\"value\":");
    string(
        out,
        &format!(
            "+33 6 {:02} {:02} {:02} {:02}",
            rng.below(100),
            rng.below(100),
            rng.below(100),
            rng.below(100)
        ),
    );
    out.push_str(",\"use\":\"mobile\"},{\"system\":\"email\",\"value\":");
    string(
        out,
        &format!(
            "{}.{}@example.org",
            given[0].to_lowercase(),
            family.to_lowercase()
        ),
    );
    out.push_str("}],\"gender\":");
    string(out, if rng.below(2) == 0 { "female" } else { "male" });
    out.push_str(",\"birthDate\":");
    string(
        out,
        &format!(
            "{}-{:02}-{:02}",
            1930 + rng.below(90),
            1 + rng.below(12),
            1 + rng.below(28)
        ),
    );
    out.push_str(",\"ssn\":");
    string(
        out,
        &format!("{}", 1_000_000_000_000u64 + rng.below(1_000_000_000_000)),
    );
    out.push_str(",\"address\":[{\"use\":\"home\",\"line\":[");
    string(out, &format!("{} {}", 1 + rng.below(120), rng.pick(STREET)));
    out.push_str("],\"city\":");
    string(out, city);
    out.push_str(",\"postalCode\":");
    string(out, &format!("{:05}", 1000 + rng.below(95_000)));
    out.push_str(",\"country\":\"FR\"}],\"maritalStatus\":{\"coding\":[{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-MaritalStatus\",\"code\":\"M\"}]},");
    out.push_str("\"extension\":[{\"url\":\"http://hl7.org/fhir/StructureDefinition/patient-birthPlace\",\"valueAddress\":{\"city\":");
    string(out, rng.pick(CITY));
    out.push_str("}},{\"url\":\"https://example.org/fhir/weight\",\"valueQuantity\":{\"value\":");
    out.push_str(&format!("{}.{}", 40 + rng.below(80), rng.below(10)));
    out.push_str(",\"unit\":\"kg\",\"system\":\"http://unitsofmeasure.org\",\"code\":\"kg\"}}],");
    out.push_str("\"condition\":[{\"code\":");
    string(out, code);
    out.push_str(",\"display\":");
    string(out, display);
    out.push_str(",\"onset\":");
    out.push_str(&(1990 + rng.below(34)).to_string());
    out.push_str(",\"severity\":");
    out.push_str(&format!("{}e-1", rng.below(10)));
    out.push_str("}]},\"search\":{\"mode\":\"match\",\"score\":1}}");
}

/// A searchset Bundle of Patient entries, about `target` bytes (the entries stop as soon as
/// the target is reached), identical for the same `(target, seed)`.
pub fn bundle(target: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut entries = String::new();
    let mut n = 0;
    let head_room = 200;
    while entries.len() + head_room < target || n == 0 {
        if n > 0 {
            entries.push(',');
        }
        entry(&mut entries, &mut rng, n);
        n += 1;
    }
    let mut out = String::with_capacity(entries.len() + head_room);
    out.push_str("{\"resourceType\":\"Bundle\",\"id\":\"");
    out.push_str(&format!("{:016x}", rng.next_u64()));
    out.push_str(
        "\",\"meta\":{\"lastUpdated\":\"2024-06-01T12:00:00Z\"},\"type\":\"searchset\",\"total\":",
    );
    out.push_str(&n.to_string());
    out.push_str(
        ",\"link\":[{\"relation\":\"self\",\"url\":\"https://fhir.example.org/Patient?_count=",
    );
    out.push_str(&n.to_string());
    out.push_str("\"}],\"entry\":[");
    out.push_str(&entries);
    out.push_str("]}");
    out.into_bytes()
}

/// The policies measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// A denylist (`default: keep`, `**.ssn: drop`): almost everything is kept, but `**`
    /// makes the engine open every container and rewrite it member by member.
    KeepAllButSsn,
    /// An allowlist of ten nested paths, one of them pseudonymised.
    Realistic,
    /// An allowlist of two top-level fields: nearly everything is read and skipped.
    DropMost,
    /// The realistic allowlist with `entry.resource.id` kept instead of pseudonymised: the
    /// difference is what the pseudonyms cost (not in [`POLICIES`]; measured at 1 MiB).
    RealisticIdKept,
}

pub const POLICIES: [(Policy, &str); 3] = [
    (Policy::KeepAllButSsn, "denylist"),
    (Policy::Realistic, "realistic"),
    (Policy::DropMost, "drop-most"),
];

/// A rule as the naive filter and the engine both read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Keep,
    Drop,
    Pseudonymize,
}

/// The realistic allowlist, with `entry.resource.id` given `id`: pseudonymised in the
/// realistic policy, kept in the variant that measures what the pseudonyms cost.
const fn realistic(id: Act) -> [(&'static str, Act); 12] {
    [
        ("resourceType", Act::Keep),
        ("type", Act::Keep),
        ("total", Act::Keep),
        ("entry.resource.resourceType", Act::Keep),
        ("entry.resource.id", id),
        ("entry.resource.meta.lastUpdated", Act::Keep),
        ("entry.resource.gender", Act::Keep),
        ("entry.resource.birthDate", Act::Keep),
        ("entry.resource.address.city", Act::Keep),
        ("entry.resource.address.country", Act::Keep),
        ("entry.resource.condition.code", Act::Keep),
        ("entry.search.mode", Act::Keep),
    ]
}

const REALISTIC: [(&str, Act); 12] = realistic(Act::Pseudonymize);
const REALISTIC_ID_KEPT: [(&str, Act); 12] = realistic(Act::Keep);

impl Policy {
    /// `(default_keep, rules)`, in the policy syntax.
    pub fn spec(self) -> (bool, &'static [(&'static str, Act)]) {
        match self {
            Policy::KeepAllButSsn => (true, &[("**.ssn", Act::Drop)]),
            Policy::Realistic => (false, &REALISTIC),
            Policy::DropMost => (false, &[("resourceType", Act::Keep), ("total", Act::Keep)]),
            Policy::RealisticIdKept => (false, &REALISTIC_ID_KEPT),
        }
    }

    /// `(default_keep, rules)` as both baselines take them: `(path, drop, pseudonymize)`.
    fn flagged(self) -> (bool, impl Iterator<Item = (&'static str, bool, bool)>) {
        let (default_keep, spec) = self.spec();
        let rules = spec
            .iter()
            .map(|(path, act)| (*path, *act == Act::Drop, *act == Act::Pseudonymize));
        (default_keep, rules)
    }

    /// The naive filter's form of the same rules.
    pub fn naive(self) -> naive::NaiveRules {
        let (default_keep, rules) = self.flagged();
        naive::NaiveRules::new(default_keep, rules, PSEUDONYM_KEY)
    }

    /// The scanner baseline's form of the same rules.
    pub fn scanner(self) -> scanner::ScanRules {
        let (default_keep, rules) = self.flagged();
        scanner::ScanRules::new(default_keep, rules, PSEUDONYM_KEY)
    }
}
