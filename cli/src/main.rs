//! `finalite`: check a configuration, see what each purpose receives, filter a JSON file as
//! the proxy would, mint demo tokens, print the configuration's JSON Schema.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand, ValueEnum};

use std::sync::Arc;

use finalite::auth::smart;
use finalite::body::{BodyError, BodyFilter};
use finalite::decision::{Allowed, BodyPlan, Delivery, Problem};
use finalite::policy::fhir::SmartAccess;
use finalite::response;
use finalite_cli::explain;
use finalite_cli::render::{self, SampleReport};
use finalite_cli::token::{self, TokenRequest};
use finalite_cli::{load_bytes, read_one, source, Env, Loaded};

#[derive(Parser)]
#[command(
    name = "finalite",
    version,
    about = "finalite's tool for policy authors: check a configuration, see what each purpose \
             receives, filter a JSON file as the proxy would, mint demo tokens.",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration as the filter does when Envoy loads it. CONFIG is finalite's
    /// JSON, or an Envoy or Istio YAML file holding it. Exit 1, with the filter's message
    /// naming the key, if it would be refused.
    Check { config: PathBuf },
    /// Per policy and purpose: authentication, scopes, streaming, the default, every rule
    /// with its effect (kept, transformed and how, withheld) and the header rules.
    Explain {
        config: PathBuf,
        /// Only this policy.
        #[arg(long)]
        policy: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// A sample response (JSON): list each of its fields with what each purpose
        /// receives, as the filter's engine decides it (values are never shown).
        #[arg(long, value_name = "BODY.json")]
        sample: Option<PathBuf>,
    },
    /// Filter a response body from stdin to stdout exactly as the filter does for this
    /// policy and purpose (decoding, size and depth limits, rules, transforms). On refusal
    /// nothing goes to stdout, the reason (byte offset, JSON path) to stderr, and the exit
    /// status is 1. The pseudonymisation key, if the policy needs one, comes from this
    /// process's environment, as in Envoy.
    Filter {
        config: PathBuf,
        #[arg(long)]
        policy: String,
        #[arg(long)]
        purpose: String,
        /// The reuser's client id (pseudonyms are per client with `per_client`).
        #[arg(long)]
        client: Option<String>,
        /// The response's content-type.
        #[arg(long, default_value = "application/json")]
        content_type: String,
        /// The response's content-encoding (gzip, deflate).
        #[arg(long)]
        content_encoding: Option<String>,
        /// On a policy that enforces SMART scopes: the caller's scopes, space-separated
        /// (e.g. "patient/Observation.rs"); every resource they do not grant is withheld.
        #[arg(long, value_name = "SCOPES")]
        smart_scopes: Option<String>,
        /// On a policy that enforces SMART scopes: the launch patient's id (the token's
        /// patient claim), which patient/ scopes need.
        #[arg(long, value_name = "ID")]
        patient: Option<String>,
    },
    /// Mint a DEMO access token (RS256) signed with the public demo key, for the local demo
    /// only: anyone can mint the same tokens.
    Token {
        /// Scopes, space-separated (e.g. "patients:read purpose:care").
        #[arg(long, default_value = "patients:read")]
        scope: String,
        /// Authorised purposes, comma-separated (the `purposes` claim).
        #[arg(long, value_delimiter = ',')]
        purposes: Option<Vec<String>>,
        /// The client id (the data reuser).
        #[arg(long, default_value = "demo-client")]
        client: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// PEM PKCS#8 RSA private key [default: the demo key, envoy/demo/DEMO-ONLY-signing-key.pem].
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long, default_value = token::ISSUER)]
        iss: String,
        #[arg(long, default_value = token::AUDIENCE)]
        aud: String,
        #[arg(long, default_value = token::DEMO_KID)]
        kid: String,
        /// Issued-at, in seconds since the epoch [default: now] (for reproducible tokens).
        #[arg(long, hide = true)]
        now: Option<u64>,
    },
    /// Print the JSON Schema of the configuration (schema/finalite.schema.json).
    Schema,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Markdown,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => check(&config),
        Command::Explain {
            config,
            policy,
            format,
            sample,
        } => explain_command(&config, policy.as_deref(), format, sample.as_deref()),
        Command::Filter {
            config,
            policy,
            purpose,
            client,
            content_type,
            content_encoding,
            smart_scopes,
            patient,
        } => filter(
            &config,
            &policy,
            &purpose,
            client.as_deref(),
            (&content_type, content_encoding.as_deref()),
            (smart_scopes.as_deref(), patient.as_deref()),
        ),
        Command::Token {
            scope,
            purposes,
            client,
            ttl,
            key,
            iss,
            aud,
            kid,
            now,
        } => token_command(TokenArgs {
            scope,
            purposes,
            client,
            ttl,
            key,
            iss,
            aud,
            kid,
            now,
        }),
        Command::Schema => {
            print!("{}", finalite_cli::schema::config_schema_text());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Every configuration of the file, each checked on its own; stderr gets exactly the
/// filter's message (prefixed with where it was found when a YAML file holds several).
fn check(path: &Path) -> Result<(), String> {
    let found = source::read(path)?;
    let several = found.len() > 1;
    let mut failed = false;
    for plugin in &found {
        let env = Env::stand_in();
        match load_bytes(&plugin.label, &plugin.bytes, &env) {
            Ok(loaded) => {
                let names: Vec<&str> = loaded
                    .compiled
                    .policies
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                println!(
                    "{}: ok, {} polic{}: {}",
                    plugin.label,
                    names.len(),
                    if names.len() == 1 { "y" } else { "ies" },
                    names.join(", ")
                );
                for note in env.notes() {
                    eprintln!("{note}");
                }
            }
            Err(error) if several => {
                eprintln!("{}: {error}", plugin.label);
                failed = true;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    if failed {
        Err(String::new())
    } else {
        Ok(())
    }
}

fn load_one(path: &Path, env: &Env) -> Result<Loaded, String> {
    let plugin = read_one(path)?;
    load_bytes(&plugin.label, &plugin.bytes, env).map_err(|e| e.to_string())
}

fn explain_command(
    path: &Path,
    only: Option<&str>,
    format: Format,
    sample: Option<&Path>,
) -> Result<(), String> {
    let env = Env::stand_in();
    let loaded = load_one(path, &env)?;
    for note in env.notes() {
        eprintln!("{note}");
    }
    let mut views = explain::describe(&loaded.config, &loaded.compiled);
    if let Some(name) = only {
        views.retain(|v| v.name == name);
        if views.is_empty() {
            return Err(unknown_policy(&loaded, name));
        }
    }
    let sample_bytes;
    let sample_name;
    let report = match sample {
        None => None,
        Some(sample_path) => {
            sample_bytes = std::fs::read(sample_path)
                .map_err(|e| format!("cannot read {}: {e}", sample_path.display()))?;
            sample_name = sample_path.display().to_string();
            let mut fields = Vec::new();
            for view in &views {
                let policy = loaded
                    .compiled
                    .policies
                    .iter()
                    .find(|p| p.name == view.name)
                    .expect("described policies are compiled ones");
                for purpose in policy.purposes.values() {
                    let listed = explain::sample_fields(&loaded.compiled, purpose, &sample_bytes)
                        .map_err(|e| {
                            format!(
                                "error: the filter refuses {sample_name} for policy {}, purpose {}: {e}",
                                policy.name, purpose.name
                            )
                        })?;
                    fields.push((policy.name.clone(), purpose.name.clone(), listed));
                }
            }
            Some(SampleReport {
                name: &sample_name,
                fields,
            })
        }
    };
    let text = match format {
        Format::Text => render::text(&loaded.label, &views, report.as_ref()),
        Format::Markdown => render::markdown(&loaded.label, &views, report.as_ref()),
    };
    print!("{text}");
    Ok(())
}

fn unknown_policy(loaded: &Loaded, name: &str) -> String {
    let names: Vec<&str> = loaded
        .compiled
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    format!(
        "error: no policy {name:?} in {}; it defines: {}",
        loaded.label,
        names.join(", ")
    )
}

/// The response path of the filter for one body: `response::plan` on the given headers,
/// then the very pipeline the proxy runs (`BodyFilter::for_spec`), fed in chunks.
fn filter(
    path: &Path,
    policy_name: &str,
    purpose_name: &str,
    client: Option<&str>,
    (content_type, content_encoding): (&str, Option<&str>),
    (smart_scopes, patient): (Option<&str>, Option<&str>),
) -> Result<(), String> {
    let loaded = load_one(path, &Env::Real)?;
    let compiled = &loaded.compiled;
    let policy = compiled
        .policies
        .iter()
        .position(|p| p.name == policy_name)
        .ok_or_else(|| unknown_policy(&loaded, policy_name))?;
    let purposes = &compiled.policies[policy].purposes;
    if !purposes.contains_key(purpose_name) {
        let names: Vec<&str> = purposes.keys().map(String::as_str).collect();
        return Err(format!(
            "error: policy {policy_name:?} has no purpose {purpose_name:?}; it defines: {}",
            names.join(", ")
        ));
    }
    // The grants `request::decide` would carry for a token with these scopes (none given:
    // none granted, so every resource is withheld).
    let enforces_smart = compiled.policies[policy]
        .fhir
        .as_ref()
        .is_some_and(|f| f.smart_scopes);
    if !enforces_smart && (smart_scopes.is_some() || patient.is_some()) {
        return Err(format!(
            "error: policy {policy_name:?} does not enforce SMART scopes; --smart-scopes and --patient are for one that does"
        ));
    }
    let smart = enforces_smart.then(|| {
        let scopes: Vec<String> = smart_scopes
            .unwrap_or_default()
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect();
        Arc::new(SmartAccess::new(
            smart::grants(&scopes),
            patient.map(str::to_string),
        ))
    });
    let allowed = Allowed {
        policy,
        purpose: purpose_name.to_string(),
        client_id: client.map(str::to_string),
        smart,
    };
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    if let Some(encoding) = content_encoding {
        headers.push(("content-encoding".to_string(), encoding.to_string()));
    }
    let plan = response::plan(compiled, &allowed, &headers, false);
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut chunk = vec![0u8; 64 * 1024];
    match plan.body {
        BodyPlan::Untouched => {
            std::io::copy(&mut stdin, &mut stdout).map_err(|e| format!("error: {e}"))?;
        }
        BodyPlan::FailClosed(problem) => {
            return Err(format!(
                "error: {}\nnote: Envoy would answer {} with an application/problem+json body, none of the upstream's",
                problem.detail, problem.status
            ));
        }
        BodyPlan::Filter(spec) => {
            let refused = |error: &BodyError| {
                let streams = matches!(
                    spec.delivery,
                    Delivery::Streamed | Delivery::Measured { streamed: true }
                );
                let consequence = if streams {
                    "this purpose streams: Envoy would reset the stream".to_string()
                } else {
                    format!(
                        "Envoy would answer {} with an application/problem+json body, none of the upstream's",
                        Problem::from_body_error(error).status
                    )
                };
                format!("error: the body is refused: {error}\nnote: {consequence}")
            };
            let mut body = BodyFilter::for_spec(&spec, compiled, client);
            // Nothing is written before the whole body is filtered: a refusal leaves stdout empty.
            let mut out = Vec::new();
            loop {
                let n = stdin
                    .read(&mut chunk)
                    .map_err(|e| format!("error: reading stdin: {e}"))?;
                if n == 0 {
                    break;
                }
                body.write(&chunk[..n]).map_err(|e| refused(&e))?;
                out.extend(body.take_output());
            }
            body.finish().map_err(|e| refused(&e))?;
            out.extend(body.take_output());
            stdout
                .write_all(&out)
                .map_err(|e| format!("error: writing stdout: {e}"))?;
        }
    }
    stdout.flush().map_err(|e| format!("error: {e}"))
}

struct TokenArgs {
    scope: String,
    purposes: Option<Vec<String>>,
    client: String,
    ttl: u64,
    key: Option<PathBuf>,
    iss: String,
    aud: String,
    kid: String,
    now: Option<u64>,
}

fn token_command(args: TokenArgs) -> Result<(), String> {
    let pem = match &args.key {
        None => token::DEMO_KEY_PEM.to_string(),
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("error: cannot read {}: {e}", path.display()))?,
    };
    let key = token::load_key(&pem).map_err(|e| format!("error: {e}"))?;
    let now = match args.now {
        Some(now) => now,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| format!("error: the clock is before 1970: {e}"))?
            .as_secs(),
    };
    let request = TokenRequest {
        client_id: args.client,
        scopes: args.scope.split_whitespace().map(str::to_string).collect(),
        purposes: args.purposes.map(|list| {
            list.into_iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        }),
        ttl_seconds: args.ttl,
        now,
        issuer: args.iss,
        audience: args.aud,
        kid: args.kid,
    };
    eprintln!(
        "warning: a DEMO token, for trying finalite locally only. The demo key is public: \
         never let anything that guards real data trust it."
    );
    println!("{}", token::mint(&key, &request));
    Ok(())
}
