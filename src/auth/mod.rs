//! Who the caller is and what it may do: claims, scopes, purposes.

pub mod claims;
pub mod purpose;
pub mod scopes;
