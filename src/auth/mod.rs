//! Who the caller is and what its token allows: claims, scopes, and the verification of
//! bearer tokens by finalite itself. It knows nothing of policies: the policy compiler
//! hands it what it needs (claim names, verification settings), and the purpose a request
//! is made for is resolved in `policy::purpose`.

pub mod bearer;
pub mod claims;
pub mod jwa;
pub mod jwks;
pub mod jwt;
pub mod scopes;
pub mod smart;
pub mod verifier;

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod testkeys;
