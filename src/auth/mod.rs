//! Who the caller is and what it may do: claims, scopes, purposes, and the verification of
//! bearer tokens by finalite itself.

pub mod bearer;
pub mod claims;
pub mod jwa;
pub mod jwks;
pub mod jwt;
pub mod key_cache;
pub mod purpose;
pub mod scopes;

#[cfg(all(test, not(target_arch = "wasm32")))]
pub(crate) mod testkeys;
