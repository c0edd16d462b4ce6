//! The JWS algorithms finalite verifies (RFC 7518 section 3, RFC 8037 for EdDSA).

/// A signature algorithm, as named by a token's `alg` or a key's `alg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-2.
    RS256,
    RS384,
    RS512,
    /// RSASSA-PSS with SHA-2, MGF1 with the same hash, salt as long as the hash.
    PS256,
    PS384,
    PS512,
    /// ECDSA on P-256 with SHA-256, on P-384 with SHA-384.
    ES256,
    ES384,
    /// Ed25519 (`EdDSA` of RFC 8037, also written `Ed25519` since RFC 9864).
    EdDSA,
    /// HMAC with SHA-2; the secret comes from the VM's environment.
    HS256,
    HS384,
    HS512,
}

impl Algorithm {
    pub const ALL: [Algorithm; 12] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
    ];

    /// The algorithm a JOSE name denotes; `None` for any other name (including `none`).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        if name == "Ed25519" {
            return Some(Algorithm::EdDSA);
        }
        Algorithm::ALL.into_iter().find(|alg| alg.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
        }
    }

    /// Whether the algorithm uses a shared secret rather than a public key.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }

    /// Output size of the algorithm's hash in bytes: the least HMAC key length RFC 7518
    /// section 3.2 allows.
    pub fn hash_len(self) -> usize {
        match self {
            Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256 | Algorithm::HS256 => 32,
            Algorithm::RS384 | Algorithm::PS384 | Algorithm::ES384 | Algorithm::HS384 => 48,
            Algorithm::RS512 | Algorithm::PS512 | Algorithm::HS512 | Algorithm::EdDSA => 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        }
        assert_eq!(Algorithm::from_name("Ed25519"), Some(Algorithm::EdDSA));
        for other in [
            "none", "None", "NONE", "", "rs256", "RS1", "ES512", "RSA-OAEP", "HS256 ",
        ] {
            assert_eq!(Algorithm::from_name(other), None, "{other}");
        }
    }

    #[test]
    fn families() {
        assert!(Algorithm::HS384.is_hmac());
        assert!(!Algorithm::RS256.is_hmac());
        assert_eq!(Algorithm::HS512.hash_len(), 64);
        assert_eq!(Algorithm::HS384.hash_len(), 48);
    }
}
