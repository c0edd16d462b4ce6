//! The `finalite` binary as a policy author runs it, from the repository root, with exact
//! expected outputs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use sha2::Sha256;

const KEY: &str = "0123456789abcdef0123456789abcdef";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn stdout(&self) -> &str {
        std::str::from_utf8(&self.stdout).unwrap()
    }
}

/// Runs `finalite ARGS` in the repository root with `stdin`, without the pseudonymisation
/// key unless `key` says so.
fn finalite(args: &[&str], stdin: &[u8], key: Option<&str>) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_finalite"));
    command
        .args(args)
        .current_dir(root())
        .env_remove("FINALITE_PSEUDONYM_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = key {
        command.env("FINALITE_PSEUDONYM_KEY", key);
    }
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    // A refusal may close stdin early: a broken pipe here is the tool's business.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(root().join("envoy/sample-data").join(name)).unwrap()
}

fn temp_file(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("finalite-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// A file of HL7's FHIR R4 examples (tests/envoy/fhir).
fn hl7(name: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/envoy/fhir").join(name)).unwrap()
}

#[test]
fn filter_applies_rules_by_type_to_hl7_examples() {
    // The outputs the README shows for the FHIR research scenario.
    let config = "envoy/examples/scenario-5-fhir-research.json";
    let args = [
        "filter",
        config,
        "--policy",
        "fhir",
        "--purpose",
        "research",
    ];
    let run = finalite(&args, &hl7("Encounter-home.json"), Some(KEY));
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert_eq!(
        run.stdout(),
        r#"{"resourceType":"Encounter","contained":[{"resourceType":"Location"}],"status":"finished","class":{"code":"HH"}}"#
    );
    let mut with_client = args.to_vec();
    with_client.extend(["--client", "lab"]);
    let run = finalite(&with_client, &hl7("Bundle-father.json"), Some(KEY));
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    assert_eq!(
        run.stdout(),
        r#"{"resourceType":"Bundle","type":"document","entry":[{"resource":{"resourceType":"Patient","id":"BQ72LA3WhXGoVoSAFZVAKESVMHtHkCwAf3OvDgP8Lmk","gender":"female","birthDate":"1955"}},{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"IMP"}}},{"resource":{"resourceType":"Observation","code":{"coding":[{"code":"46241-6"}]},"subject":{"reference":"sBMSmT3Eup7Y3T_7kYNZCLgRzVKKhs1lZUcQjrWLNyA"}}}]}"#
    );
}

#[test]
fn explain_shows_the_rules_of_each_type() {
    let run = finalite(
        &["explain", "envoy/examples/scenario-5-fhir-research.json"],
        b"",
        Some(KEY),
    );
    assert_eq!((run.code, run.stderr.as_str()), (0, ""));
    let text = run.stdout();
    let start = text
        .find("    types (any other type: withheld whole):")
        .expect("types");
    let patient = "      Patient: other members withheld (allowlist: only what a rule keeps or transforms is sent)
        birthDate  transformed: reduced to its year
        gender     kept
        id         transformed: pseudonymised (keyed HMAC-SHA-256)
";
    assert!(text[start..].contains(patient), "{text}");
    assert!(text[start..].contains(
        "      Organization: other members kept (denylist: only what a rule withholds or transforms is touched)\n"
    ));
    let run = finalite(
        &[
            "explain",
            "envoy/examples/scenario-5-fhir-research.json",
            "--format",
            "markdown",
        ],
        b"",
        Some(KEY),
    );
    assert!(
        run.stdout()
            .contains("| `Patient` | `birthDate` | transformed: reduced to its year |"),
        "{}",
        run.stdout()
    );
}

// --- check --------------------------------------------------------------------------------

#[test]
fn check_accepts_every_example() {
    for (file, policies) in [
        ("scenario-1-billing-partner.json", "1 policy: patients"),
        ("scenario-2-research.json", "1 policy: patients"),
        ("scenario-3-open-data.json", "1 policy: open-data"),
        ("scenario-4-closed-sharing-mtls.json", "1 policy: patients"),
        ("scenario-5-fhir-research.json", "1 policy: fhir"),
    ] {
        let path = format!("envoy/examples/{file}");
        let run = finalite(&["check", &path], b"", Some(KEY));
        assert_eq!(run.code, 0, "{file}: {}", run.stderr);
        assert_eq!(run.stdout(), format!("{path}: ok, {policies}\n"));
        assert_eq!(run.stderr, "");
    }
}

#[test]
fn check_reads_the_configuration_inside_envoy_yaml() {
    let run = finalite(&["check", "envoy/envoy.yaml"], b"", Some(KEY));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout()
            .starts_with("envoy/envoy.yaml: wasm filter \"finalite\": ok, "),
        "{}",
        run.stdout()
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn check_stands_in_for_a_missing_key_and_says_so() {
    let run = finalite(
        &["check", "envoy/examples/scenario-2-research.json"],
        b"",
        None,
    );
    assert_eq!(run.code, 0);
    assert_eq!(
        run.stdout(),
        "envoy/examples/scenario-2-research.json: ok, 1 policy: patients\n"
    );
    assert_eq!(
        run.stderr,
        "note: FINALITE_PSEUDONYM_KEY is not set here: used a stand-in key. Envoy refuses this \
         configuration unless its VM has FINALITE_PSEUDONYM_KEY (vm_config.environment_variables)\n"
    );
}

#[test]
fn check_refuses_with_exactly_the_filters_message() {
    let cases = [
        (
            r#"{"policies": {"patients": {"purposes": {"research": {"fields": {"birthDate": "yeer"}}}}}}"#,
            "policies.patients.purposes.research.fields.\"birthDate\": unknown action \"yeer\"; \
             expected \"keep\", \"drop\", \"null\", \"pseudonymize\", \"year\", \
             {\"mask\": {\"keep_last\": N}} or {\"truncate\": N}",
        ),
        (
            r#"{"policies": {"p": {"purposes": {"care": {"defualt": "keep"}}}}}"#,
            "policies.p.purposes.care.defualt: unknown field `defualt`, expected one of \
             `default`, `fields`, `headers`, `passthrough_media_types`, `streaming`, `types`",
        ),
        (
            r#"{"policies": {"p": {"default_purpose": "x", "purposes": {"care": {}}}}}"#,
            "policies.p.default_purpose: purpose \"x\" is not defined in this policy's purposes",
        ),
    ];
    for (i, (json, message)) in cases.iter().enumerate() {
        let path = temp_file(&format!("bad-{i}.json"), json);
        let run = finalite(&["check", path.to_str().unwrap()], b"", Some(KEY));
        assert_eq!(run.code, 1);
        assert_eq!(run.stdout(), "");
        assert_eq!(run.stderr, format!("{message}\n"));
        // The very message the filter logs when Envoy hands it this configuration.
        let filter = finalite::policy::CompiledConfig::load(json.as_bytes(), &|_| None)
            .unwrap_err()
            .to_string();
        assert_eq!(run.stderr, format!("{filter}\n"));
    }
}

#[test]
fn check_names_the_configuration_when_a_yaml_file_holds_several() {
    let yaml = r#"
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: good}
spec:
  pluginConfig:
    policies: {p: {auth: none, purposes: {u: {fields: {id: keep}}}}}
---
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: bad}
spec:
  pluginConfig:
    policies: {p: {auth: none, purposes: {u: {fields: {"a..b": keep}}}}}
"#;
    let path = temp_file("two.yaml", yaml);
    let label = path.display().to_string();
    let run = finalite(&["check", &label], b"", None);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stdout(),
        format!("{label}: WasmPlugin \"good\": ok, 1 policy: p\n")
    );
    assert_eq!(
        run.stderr,
        format!(
            "{label}: WasmPlugin \"bad\": policies.p.purposes.u.fields.\"a..b\": bad path: \
             empty segment at character 3\n"
        )
    );
}

#[test]
fn check_says_when_there_is_nothing_to_check() {
    let path = temp_file("empty.yaml", "static_resources: {}\n");
    let label = path.display().to_string();
    let run = finalite(&["check", &label], b"", None);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        format!(
            "{label}: no finalite configuration found (looked for an envoy.filters.http.wasm \
             filter's `configuration` and an Istio WasmPlugin's `pluginConfig`)\n"
        )
    );
}

// --- explain ------------------------------------------------------------------------------

#[test]
fn explain_in_text() {
    let run = finalite(
        &["explain", "envoy/examples/scenario-1-billing-partner.json"],
        b"",
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout(),
        "\
configuration: envoy/examples/scenario-1-billing-partner.json

policy patients
  covers:          routes whose metadata or name says patients; requests matching GET /patients*
  authentication:  a verified bearer token (Envoy's jwt_authn)
  scopes:          GET: patients:read
  default purpose: none (the client must declare one)

  purpose billing
    other fields: withheld (allowlist: only what a rule keeps or transforms is sent)
    body:         filtered whole before it is sent (an unreadable body becomes a 502)
    headers:      removed: x-patient-*
    rules:
      birthDate  kept
      id         kept
      insurance  kept
      name       kept
"
    );
}

#[test]
fn explain_mtls_clients() {
    let run = finalite(
        &[
            "explain",
            "envoy/examples/scenario-4-closed-sharing-mtls.json",
        ],
        b"",
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout(),
        "\
configuration: envoy/examples/scenario-4-closed-sharing-mtls.json

policy patients
  covers:          routes whose metadata or name says patients; requests matching GET /patients*
  authentication:  mutual TLS: the client is its certificate's URI SAN
  clients:         spiffe://hospital.example/ns/care/sa/ehr may use care
  scopes:          none required
  default purpose: care

  purpose care
    other fields: kept (denylist: only what a rule withholds or transforms is touched)
    body:         sent as the API wrote it (no rule changes anything)
    headers:      all kept
    rules:        none
"
    );
}

#[test]
fn explain_in_markdown_with_a_sample() {
    let run = finalite(
        &[
            "explain",
            "envoy/examples/scenario-2-research.json",
            "--format",
            "markdown",
            "--sample",
            "envoy/sample-data/patients/1.json",
        ],
        b"",
        Some(KEY),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout(),
        "\
# What each purpose receives

Generated by `finalite explain` from `envoy/examples/scenario-2-research.json`. Fields are named by their path in the response (arrays marked `[*]`); no value is shown.

## Policy `patients`

| | |
|---|---|
| Covers | routes whose metadata or name says `patients`; requests matching `GET /patients*` |
| Authentication | a verified bearer token (Envoy's jwt_authn) |
| Scopes | GET: patients:read |
| Default purpose | none (the client must declare one) |

### Purpose `research` (policy `patients`)

- Fields no rule names: withheld (allowlist: only what a rule keeps or transforms is sent)
- Body: filtered whole before it is sent (an unreadable body becomes a 502)
- Response headers: removed: `x-patient-*`

| Rule | Effect |
|---|---|
| `**.ssn` | withheld |
| `birthDate` | transformed: reduced to its year |
| `conditions.code` | kept |
| `conditions.onset` | transformed: reduced to its year |
| `id` | transformed: pseudonymised (keyed HMAC-SHA-256) |

Fields of `envoy/sample-data/patients/1.json`:

| Field | The reuser receives it |
|---|---|
| `id` | transformed: pseudonymised (keyed HMAC-SHA-256) |
| `name.family` | withheld |
| `name.given[*]` | withheld |
| `birthDate` | transformed: reduced to its year |
| `ssn` | withheld |
| `address.line` | withheld |
| `address.city` | withheld |
| `address.postalCode` | withheld |
| `phone` | withheld |
| `insurance.provider` | withheld |
| `insurance.number` | withheld |
| `conditions[*].code` | kept |
| `conditions[*].display` | withheld |
| `conditions[*].onset` | transformed: reduced to its year |
"
    );
}

#[test]
fn explain_one_policy_of_the_shipped_yaml() {
    let run = finalite(
        &["explain", "envoy/envoy.yaml", "--policy", "open-data"],
        b"",
        Some(KEY),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout().contains("\npolicy open-data\n"),
        "{}",
        run.stdout()
    );
    assert!(
        !run.stdout().contains("\npolicy patients\n"),
        "{}",
        run.stdout()
    );

    let run = finalite(
        &["explain", "envoy/envoy.yaml", "--policy", "nope"],
        b"",
        Some(KEY),
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert!(
        run.stderr.starts_with(
            "error: no policy \"nope\" in envoy/envoy.yaml: wasm filter \"finalite\"; it defines: "
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn explain_reports_a_sample_the_filter_would_refuse() {
    let path = temp_file("late.json", r#"{"id": "1", "birthDate": "one day"}"#);
    let label = path.display().to_string();
    let run = finalite(
        &[
            "explain",
            "envoy/examples/scenario-2-research.json",
            "--sample",
            &label,
        ],
        b"",
        Some(KEY),
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        format!(
            "error: the filter refuses {label} for policy patients, purpose research: \"year\" \
             expects an ISO 8601 date or date-time at byte 34 ($.birthDate)\n"
        )
    );
}

// --- filter -------------------------------------------------------------------------------

#[test]
fn filter_writes_what_the_purpose_receives() {
    let run = finalite(
        &[
            "filter",
            "envoy/examples/scenario-1-billing-partner.json",
            "--policy",
            "patients",
            "--purpose",
            "billing",
        ],
        &sample("patients/2.json"),
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout(),
        r#"{"id":"2","name":{"family": "Dubois", "given": ["Hugo"]},"birthDate":"1991-07-30","insurance":{"provider": "Caisse Fictive", "number": "CF-0002"}}"#
    );
}

#[test]
fn filter_pseudonymises_with_the_key_from_the_environment() {
    let args = [
        "filter",
        "envoy/examples/scenario-2-research.json",
        "--policy",
        "patients",
        "--purpose",
        "research",
        "--client",
        "research-lab",
    ];
    let run = finalite(&args, &sample("patients.json"), Some(KEY));
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The ids are tests/envoy/harness.py's pseudonym(KEY, id, "research-lab").
    assert_eq!(
        run.stdout(),
        r#"[{"id":"8tnFYFIe5bSgbHcZPzKTC9qmprv4kCwki4mkVkwgZzA","birthDate":"1984","conditions":[{"code":"E11","onset":"2015"},{"code":"I10","onset":"2019"}]},{"id":"e_nU0i5Nvj-SMlX3MLv51mi8ROzLdtSGRrs9os8eZP8","birthDate":"1991","conditions":[{"code":"J45","onset":"2001"}]},{"id":"2oxkh27f0xM4_OnrC156cOD-64uJmUwXVUP0yCMkxAQ","birthDate":"1958","conditions":[{"code":"M81","onset":"2012"},{"code":"H25","onset":"2021"}]}]"#
    );

    // Without the key, the filter's own refusal (filter never stands in for a key).
    let run = finalite(&args, &sample("patients.json"), None);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        "pseudonymization.key_env: the environment variable FINALITE_PSEUDONYM_KEY is not set \
         in the VM (Envoy: vm_config.environment_variables)\n"
    );
}

#[test]
fn filter_decodes_gzip_like_the_filter() {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&sample("patients/2.json")).unwrap();
    let body = gz.finish().unwrap();
    let run = finalite(
        &[
            "filter",
            "envoy/examples/scenario-3-open-data.json",
            "--policy",
            "open-data",
            "--purpose",
            "open-data",
            "--content-encoding",
            "gzip",
            "--content-type",
            "application/fhir+json; charset=utf-8",
        ],
        &body,
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), "{}");
}

#[test]
fn filter_refusals_go_to_stderr_with_offset_and_path_and_nothing_to_stdout() {
    let billing = [
        "filter",
        "envoy/examples/scenario-1-billing-partner.json",
        "--policy",
        "patients",
        "--purpose",
        "billing",
    ];
    let run = finalite(
        &billing,
        br#"{"id": "1", "insurance": {"number": "X"}, "name": tru}"#,
        None,
    );
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        "error: the body is refused: unexpected '}' where a JSON value was expected at byte 53 ($.name)\n\
         note: Envoy would answer 502 with an application/problem+json body, none of the upstream's\n"
    );

    let mut args = billing.to_vec();
    args.extend(["--content-type", "text/html"]);
    let run = finalite(&args, b"<p>hello</p>", None);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        "error: the upstream response could not be filtered: the media type \"text/html\" cannot be filtered\n\
         note: Envoy would answer 502 with an application/problem+json body, none of the upstream's\n"
    );

    let mut args = billing.to_vec();
    args.extend(["--content-encoding", "br"]);
    let run = finalite(&args, b"{}", None);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert!(
        run.stderr
            .starts_with("error: the upstream response could not be filtered: content-encoding \"br\" is not supported\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn filter_names_what_exists_when_asked_for_what_does_not() {
    let run = finalite(
        &[
            "filter",
            "envoy/examples/scenario-1-billing-partner.json",
            "--policy",
            "patients",
            "--purpose",
            "research",
        ],
        b"{}",
        None,
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: policy \"patients\" has no purpose \"research\"; it defines: billing\n"
    );
}

#[test]
fn filter_passes_an_untouched_purpose_byte_for_byte() {
    let body = sample("patients.json");
    let run = finalite(
        &[
            "filter",
            "envoy/examples/scenario-4-closed-sharing-mtls.json",
            "--policy",
            "patients",
            "--purpose",
            "care",
        ],
        &body,
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, body);
}

// --- token --------------------------------------------------------------------------------

/// What envoy/demo/mint_token.py mints for the same claims (PyJWT, RS256, the demo key):
/// `mint(client_id="billing-partner", scope="patients:read", purposes=["billing",
/// "research"], now=1700000000)`.
const MINT_TOKEN_PY: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZpbmFsaXRlLWRlbW8tMSIsInR5cCI6IkpXVCJ9.eyJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiaXNzIjoiaHR0cHM6Ly9pZHAuZXhhbXBsZSIsImF1ZCI6InBhdGllbnRzLWFwaSIsImNsaWVudF9pZCI6ImJpbGxpbmctcGFydG5lciIsInNjb3BlIjoicGF0aWVudHM6cmVhZCIsInB1cnBvc2VzIjpbImJpbGxpbmciLCJyZXNlYXJjaCJdfQ.nd2Z7Z_-cw0pfIjoQvLm6evLifRvHTkOrALqdwRwrFbncYtceHWubvhwTpgyfkRxFzqq---EwuzWi1EdTObH5XThSDzwzbkm9BCS0W7OsvUUwpl9YN7LPl7FNAhg305kokkhoSxn_Ix_2ZZ5rTAsBMqad78niA7paayK-XBy6_bm5MV6ZVtVHkTl88eImuDL6fvQ3AxcUJnrkXnP3NvDXiLoLpK-C1QezUnnmFZ-k5gmvpD4LXwQaiPxaUQfCkL7J_Zl3AnfVAJALj7vFa9SpSC9Ld2EMgInXyROPFAV6hkurWF-wt4vFK6OG6pFuzX-SC1Ir4lzlIjBil4W8AEwRA";

#[test]
fn token_mints_what_the_demo_script_mints() {
    let run = finalite(
        &[
            "token",
            "--scope",
            "patients:read",
            "--purposes",
            "billing,research",
            "--client",
            "billing-partner",
            "--now",
            "1700000000",
        ],
        b"",
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout(), format!("{MINT_TOKEN_PY}\n"));
    assert_eq!(
        run.stderr,
        "warning: a DEMO token, for trying finalite locally only. The demo key is public: never \
         let anything that guards real data trust it.\n"
    );
}

#[test]
fn token_verifies_with_the_demo_jwks() {
    let run = finalite(
        &[
            "token",
            "--scope",
            "patients:read purpose:care",
            "--client",
            "care-team",
            "--ttl",
            "60",
        ],
        b"",
        None,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let token = run.stdout().trim_end().to_string();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);

    let jwks: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root().join("envoy/demo/jwks.json")).unwrap())
            .unwrap();
    let jwk = &jwks["keys"][0];
    let number = |name: &str| {
        BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(jwk[name].as_str().unwrap()).unwrap())
    };
    let public = RsaPublicKey::new(number("n"), number("e")).unwrap();
    let signature =
        Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
    VerifyingKey::<Sha256>::new(public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("signed by the demo key");

    let header: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        header,
        serde_json::json!({"alg": "RS256", "kid": "finalite-demo-1", "typ": "JWT"})
    );
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "https://idp.example");
    assert_eq!(claims["aud"], "patients-api");
    assert_eq!(claims["client_id"], "care-team");
    assert_eq!(claims["scope"], "patients:read purpose:care");
    assert!(claims.get("purposes").is_none());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        60
    );
}

#[test]
fn token_refuses_a_file_that_is_not_a_key() {
    let path = temp_file("not-a-key.pem", "hello\n");
    let run = finalite(&["token", "--key", path.to_str().unwrap()], b"", None);
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        "error: no \"-----BEGIN PRIVATE KEY-----\" (PKCS#8 PEM) in the key file\n"
    );
}

// --- usage --------------------------------------------------------------------------------

#[test]
fn usage_errors_exit_2() {
    let run = finalite(&["filter", "envoy/envoy.yaml"], b"", None);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("--policy <POLICY>"), "{}", run.stderr);
}

#[test]
fn filter_enforces_smart_scopes_given_on_the_command_line() {
    let config = temp_file(
        "smart.json",
        r#"{"policies": {"fhir": {"fhir": {"base": "/fhir", "smart_scopes": true},
            "purposes": {"care": {"default": "keep"}}}}}"#,
    );
    let config = config.to_str().unwrap();
    let args = |extra: &[&'static str]| -> Vec<String> {
        ["filter", config, "--policy", "fhir", "--purpose", "care"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let run_with = |extra: &[&'static str], body: &[u8]| {
        let args = args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        finalite(&args, body, None)
    };
    let bundle = br#"{"resourceType": "Bundle", "total": 2, "entry": [
        {"resource": {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/example"}}},
        {"resource": {"resourceType": "Observation", "id": "o2", "subject": {"reference": "Patient/pat2"}}}]}"#;
    let run = run_with(
        &[
            "--smart-scopes",
            "patient/Observation.rs",
            "--patient",
            "example",
        ],
        bundle,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout(),
        r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/example"}}}]}"#
    );
    // No scopes given: none granted, so a single resource is refused as Envoy would.
    let run = run_with(&[], &hl7("Patient-example.json"));
    assert_eq!(run.code, 1);
    assert_eq!(run.stdout(), "");
    assert_eq!(
        run.stderr,
        "error: the body is refused: the response is a resource the caller's SMART scopes do not grant at byte 0 ($)\n\
         note: Envoy would answer 403 with an application/problem+json body, none of the upstream's\n"
    );
    // The flags are for a policy that enforces SMART scopes.
    let run = finalite(
        &[
            "filter",
            "envoy/examples/scenario-1-billing-partner.json",
            "--policy",
            "patients",
            "--purpose",
            "billing",
            "--patient",
            "1",
        ],
        b"{}",
        None,
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr,
        "error: policy \"patients\" does not enforce SMART scopes; --smart-scopes and --patient are for one that does\n"
    );
}
