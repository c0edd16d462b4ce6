//! Arbitrary bytes as the plugin configuration (JSON or a serialised
//! `google.protobuf.Struct`, as the host hands it over): `CompiledConfig::load` never panics,
//! and a configuration it accepts never makes the request path panic
//! (`finalite_test_support::exercise`: every purpose's rules on bodies built from its own paths,
//! `request::decide` for many routes, methods, purposes and callers, the response plans
//! and body filters of what is allowed, denials and audit records).
//!
//! Built without the `reference` feature, so serde_json parses exactly as in the module.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    finalite_test_support::exercise::exercise(data);
});
