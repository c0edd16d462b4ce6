//! `finalite explain` output: plain text for a terminal, Markdown for a register of
//! processing activities. Only presentation: the content comes from
//! [`crate::explain`].

use std::fmt::Write;

use crate::explain::{Effect, HeadersView, PolicyView, PurposeView, SampleField, SmartView};

/// The fields of a sample document one purpose receives, for one purpose of one policy.
pub struct SampleReport<'a> {
    pub name: &'a str,
    /// (policy, purpose) → fields.
    pub fields: Vec<(String, String, Vec<SampleField>)>,
}

impl SampleReport<'_> {
    fn for_purpose(&self, policy: &str, purpose: &str) -> Option<&[SampleField]> {
        self.fields
            .iter()
            .find(|(p, u, _)| p == policy && u == purpose)
            .map(|(_, _, f)| f.as_slice())
    }
}

fn auth_words(auth: &str) -> String {
    match auth {
        "required" => "a verified bearer token (Envoy's jwt_authn)".to_string(),
        "none" => "none (open data: anyone, no token)".to_string(),
        "mtls" => "mutual TLS: the client is its certificate's URI SAN".to_string(),
        other => other.to_string(),
    }
}

fn default_words(effect: &Effect) -> &'static str {
    match effect {
        Effect::Kept => "kept (denylist: only what a rule withholds or transforms is touched)",
        _ => "withheld (allowlist: only what a rule keeps or transforms is sent)",
    }
}

fn headers_words(headers: &HeadersView, code: fn(&str) -> String) -> String {
    let list = |names: &[String]| names.iter().map(|n| code(n)).collect::<Vec<_>>().join(", ");
    match headers {
        HeadersView::KeepAll => "all kept".to_string(),
        HeadersView::Remove(names) => format!("removed: {}", list(names)),
        HeadersView::KeepOnly(names) => format!("only these kept: {}", list(names)),
    }
}

fn body_words(purpose: &PurposeView) -> &'static str {
    match (purpose.body_untouched, purpose.streaming) {
        (true, _) => "sent as the API wrote it (no rule changes anything)",
        (false, false) => "filtered whole before it is sent (an unreadable body becomes a 502)",
        (false, true) => "filtered and sent chunk by chunk (an unreadable body resets the stream)",
    }
}

fn scopes_line(policy: &PolicyView) -> String {
    if policy.scopes.is_empty() {
        return "none required".to_string();
    }
    policy
        .scopes
        .iter()
        .map(|(method, scopes)| {
            let method = if method == "*" {
                "any other method"
            } else {
                method
            };
            format!("{method}: {scopes}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn selection_line(policy: &PolicyView, code: fn(&str) -> String) -> String {
    let mut parts = vec![format!(
        "routes whose metadata or name says {}",
        code(&policy.name)
    )];
    if !policy.matches.is_empty() {
        parts.push(format!(
            "requests matching {}",
            policy
                .matches
                .iter()
                .map(|m| code(m))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    parts.join("; ")
}

fn clients_line(policy: &PolicyView, code: fn(&str) -> String) -> String {
    policy
        .clients
        .iter()
        .map(|client| {
            let purposes = if client.purposes.is_empty() {
                "no purpose".to_string()
            } else {
                client
                    .purposes
                    .iter()
                    .map(|p| code(p))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let scopes = if client.scopes.is_empty() {
                String::new()
            } else {
                format!(", scopes {}", client.scopes.join(" "))
            };
            format!("{} may use {purposes}{scopes}", code(&client.id))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What SMART scopes do on a policy that enforces them.
fn smart_words(smart: &SmartView, code: fn(&str) -> String) -> String {
    let base = if smart.base.is_empty() {
        "/"
    } else {
        &smart.base
    };
    format!(
        "enforced (FHIR base {}, launch patient from the claim {}): a request needs a scope \
         for its interaction, and each resource of the response (Bundle entries, contained \
         resources, NDJSON lines) is withheld unless a scope grants its type, category and, \
         for patient/ scopes, the launch patient's compartment; Bundle totals are withheld; \
         a single resource not granted is refused (403); the purpose's rules then apply to \
         what is granted",
        code(base),
        code(&smart.patient_claim)
    )
}

fn plain(text: &str) -> String {
    text.to_string()
}

/// Inline code in Markdown, safe inside a table cell.
fn code(text: &str) -> String {
    format!("`{}`", text.replace('|', "\\|"))
}

/// Plain text, for a terminal.
pub fn text(source: &str, policies: &[PolicyView], sample: Option<&SampleReport>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "configuration: {source}");
    for policy in policies {
        let _ = writeln!(out);
        let _ = writeln!(out, "policy {}", policy.name);
        let _ = writeln!(out, "  covers:          {}", selection_line(policy, plain));
        let _ = writeln!(out, "  authentication:  {}", auth_words(&policy.auth));
        if !policy.clients.is_empty() {
            let _ = writeln!(out, "  clients:         {}", clients_line(policy, plain));
        }
        let _ = writeln!(out, "  scopes:          {}", scopes_line(policy));
        if let Some(smart) = &policy.smart {
            let _ = writeln!(out, "  SMART scopes:    {}", smart_words(smart, plain));
        }
        let _ = writeln!(
            out,
            "  default purpose: {}",
            policy
                .default_purpose
                .as_deref()
                .unwrap_or("none (the client must declare one)")
        );
        for purpose in &policy.purposes {
            let _ = writeln!(out);
            let _ = writeln!(out, "  purpose {}", purpose.name);
            let _ = writeln!(out, "    other fields: {}", default_words(&purpose.default));
            let _ = writeln!(out, "    body:         {}", body_words(purpose));
            let _ = writeln!(
                out,
                "    headers:      {}",
                headers_words(&purpose.headers, plain)
            );
            if !purpose.passthrough_media_types.is_empty() {
                let _ = writeln!(
                    out,
                    "    untouched:    {}",
                    purpose.passthrough_media_types.join(", ")
                );
            }
            let rows: Vec<(String, String)> = purpose
                .rules
                .iter()
                .map(|r| (r.path.clone(), r.effect.to_string()))
                .collect();
            if rows.is_empty() {
                let _ = writeln!(out, "    rules:        none");
            } else {
                let _ = writeln!(out, "    rules:");
                table(&mut out, "      ", &rows);
            }
            if !purpose.types.is_empty() {
                let _ = writeln!(out, "    types (any other type: withheld whole):");
                for typed in &purpose.types {
                    let _ = writeln!(
                        out,
                        "      {}: other members {}",
                        typed.name,
                        default_words(&typed.default)
                    );
                    let rows: Vec<(String, String)> = typed
                        .rules
                        .iter()
                        .map(|r| (r.path.clone(), r.effect.to_string()))
                        .collect();
                    table(&mut out, "        ", &rows);
                }
            }
            if let Some(sample) = sample {
                if let Some(fields) = sample.for_purpose(&policy.name, &purpose.name) {
                    let _ = writeln!(out, "    sample {}:", sample.name);
                    let rows: Vec<(String, String)> = fields
                        .iter()
                        .map(|f| (f.path.clone(), f.effect.to_string()))
                        .collect();
                    table(&mut out, "      ", &rows);
                }
            }
        }
    }
    out
}

fn table(out: &mut String, indent: &str, rows: &[(String, String)]) {
    let width = rows
        .iter()
        .map(|(p, _)| p.chars().count())
        .max()
        .unwrap_or(0);
    for (path, effect) in rows {
        let _ = writeln!(out, "{indent}{path:<width$}  {effect}");
    }
}

/// Markdown, for a register of processing activities.
pub fn markdown(source: &str, policies: &[PolicyView], sample: Option<&SampleReport>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# What each purpose receives");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Generated by `finalite explain` from {}. Fields are named by their path in the \
         response (arrays marked `[*]`); no value is shown.",
        code(source)
    );
    for policy in policies {
        let _ = writeln!(out);
        let _ = writeln!(out, "## Policy {}", code(&policy.name));
        let _ = writeln!(out);
        let _ = writeln!(out, "| | |");
        let _ = writeln!(out, "|---|---|");
        let _ = writeln!(out, "| Covers | {} |", selection_line(policy, code));
        let _ = writeln!(out, "| Authentication | {} |", auth_words(&policy.auth));
        if !policy.clients.is_empty() {
            let _ = writeln!(out, "| Clients | {} |", clients_line(policy, code));
        }
        let _ = writeln!(out, "| Scopes | {} |", scopes_line(policy));
        if let Some(smart) = &policy.smart {
            let _ = writeln!(out, "| SMART scopes | {} |", smart_words(smart, code));
        }
        let _ = writeln!(
            out,
            "| Default purpose | {} |",
            policy
                .default_purpose
                .as_deref()
                .map(code)
                .unwrap_or_else(|| "none (the client must declare one)".into())
        );
        for purpose in &policy.purposes {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "### Purpose {} (policy {})",
                code(&purpose.name),
                code(&policy.name)
            );
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "- Fields no rule names: {}",
                default_words(&purpose.default)
            );
            let _ = writeln!(out, "- Body: {}", body_words(purpose));
            let _ = writeln!(
                out,
                "- Response headers: {}",
                headers_words(&purpose.headers, code)
            );
            if !purpose.passthrough_media_types.is_empty() {
                let _ = writeln!(
                    out,
                    "- Sent untouched: {}",
                    purpose
                        .passthrough_media_types
                        .iter()
                        .map(|m| code(m))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let _ = writeln!(out);
            if purpose.rules.is_empty() {
                let _ = writeln!(out, "No field rules.");
            } else {
                let _ = writeln!(out, "| Rule | Effect |");
                let _ = writeln!(out, "|---|---|");
                for rule in &purpose.rules {
                    let _ = writeln!(out, "| {} | {} |", code(&rule.path), rule.effect);
                }
            }
            if !purpose.types.is_empty() {
                let _ = writeln!(out);
                let _ = writeln!(
                    out,
                    "Rules by type (an object of any other type is withheld whole):"
                );
                let _ = writeln!(out);
                let _ = writeln!(out, "| Type | Rule | Effect |");
                let _ = writeln!(out, "|---|---|---|");
                for typed in &purpose.types {
                    let _ = writeln!(
                        out,
                        "| {} | (other members) | {} |",
                        code(&typed.name),
                        default_words(&typed.default)
                    );
                    for rule in &typed.rules {
                        let _ = writeln!(
                            out,
                            "| {} | {} | {} |",
                            code(&typed.name),
                            code(&rule.path),
                            rule.effect
                        );
                    }
                }
            }
            if let Some(sample) = sample {
                if let Some(fields) = sample.for_purpose(&policy.name, &purpose.name) {
                    let _ = writeln!(out);
                    let _ = writeln!(out, "Fields of {}:", code(sample.name));
                    let _ = writeln!(out);
                    let _ = writeln!(out, "| Field | The reuser receives it |");
                    let _ = writeln!(out, "|---|---|");
                    for field in fields {
                        let _ = writeln!(out, "| {} | {} |", code(&field.path), field.effect);
                    }
                }
            }
        }
    }
    out
}
