//! The lanes give finalite's MAC, byte for byte (natively these run the portable `[u32; 4]`
//! lanes; the runner checks the SIMD128 build the same way inside V8 before it times).

use finalite_bench_hmac_lanes::check::{compare, every_length};
use finalite_bench_hmac_lanes::{LaneMac, ScalarMac};

#[test]
fn random_keys_clients_and_values_match_hmac_sha2() {
    compare(1, 3000).unwrap();
}

#[test]
fn every_padding_boundary_matches_in_every_lane() {
    every_length(b"bench-key-0123456789abcdefghijkl", Some("bench-client")).unwrap();
    every_length(b"k", None).unwrap();
    every_length(&[7u8; 100], Some("")).unwrap();
}

#[test]
fn rfc_4231_test_case_2() {
    // Key "Jefe", data "what do ya want for nothing?", no client prefix.
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    let data: &[u8] = b"what do ya want for nothing?";
    let got = LaneMac::new(b"Jefe", None).mac4([data; 4]);
    for mac in got {
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }
    assert_eq!(ScalarMac::new(b"Jefe", None).mac(data), got[0]);
}

#[test]
fn the_client_prefix_changes_the_mac() {
    let key = b"bench-key-0123456789abcdefghijkl";
    let value: &[u8] = b"pat-0000002a";
    let with = LaneMac::new(key, Some("bench-client")).mac4([value; 4]);
    let without = LaneMac::new(key, None).mac4([value; 4]);
    assert_ne!(with[0], without[0]);
    assert_eq!(
        with[0],
        ScalarMac::new(key, Some("bench-client")).mac(value)
    );
}
