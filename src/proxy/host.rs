//! Small readers over host calls: headers, properties, claims.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType};

use crate::auth::claims::{decode_envoy_claim, ClaimSource, ClaimValue};

/// A map's headers as the host holds them, values as bytes; `None` if the host refuses.
/// One call for the whole map costs less than a call per header read or removed.
pub fn header_pairs(map: MapType) -> Option<Vec<(String, Vec<u8>)>> {
    hostcalls::get_map_bytes(map).ok()
}

/// All headers of a map, values decoded lossily (only names and media types are read).
/// A UTF-8 value (nearly all) becomes a string in place, without a copy.
pub fn headers(map: MapType) -> Vec<(String, String)> {
    hostcalls::get_map_bytes(map)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let value = String::from_utf8(value)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (name, value)
        })
        .collect()
}

/// Sets a header, replacing every value it had.
pub fn set_header(map: MapType, name: &str, value: &str) {
    if let Err(status) = hostcalls::set_map_value(map, name, Some(value)) {
        log::warn!("could not set header {name}: {status:?}");
    }
}

pub fn remove_header(map: MapType, name: &str) {
    if let Err(status) = hostcalls::set_map_value(map, name, None) {
        log::warn!("could not remove header {name}: {status:?}");
    }
}

/// A string property, such as the route name.
pub fn string_property(path: Vec<&str>) -> Option<String> {
    hostcalls::get_property(path)
        .ok()
        .flatten()
        .and_then(|bytes| String::from_utf8(bytes).ok())
}

/// The host's clock, in Unix seconds (0 if the host cannot tell, which fails `exp` checks).
pub fn unix_now() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// An integer property (Envoy encodes them as 8 little-endian bytes).
pub fn int_property(path: Vec<&str>) -> Option<i64> {
    let bytes = hostcalls::get_property(path).ok().flatten()?;
    let array: [u8; 8] = bytes.as_slice().try_into().ok()?;
    Some(i64::from_le_bytes(array))
}

/// Bytes `[start, start + len)` of the response body buffer.
pub fn response_body(start: usize, len: usize) -> Option<Vec<u8>> {
    if len == 0 {
        return Some(Vec::new());
    }
    hostcalls::get_buffer(BufferType::HttpResponseBody, start, len)
        .ok()
        .flatten()
}

/// No verified token: what a request is taken to carry when nothing can verify one.
pub struct NoToken;

impl ClaimSource for NoToken {
    fn has_verified_token(&self) -> bool {
        false
    }

    fn claim(&self, _name: &str) -> Option<ClaimValue> {
        None
    }
}

/// Claims verified by Envoy's jwt_authn filter, from its `payload_in_metadata`.
pub struct JwtAuthnClaims<'a> {
    pub metadata_key: &'a str,
}

const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";

impl ClaimSource for JwtAuthnClaims<'_> {
    fn has_verified_token(&self) -> bool {
        matches!(
            hostcalls::get_property(vec![
                "metadata",
                "filter_metadata",
                JWT_AUTHN,
                self.metadata_key
            ]),
            Ok(Some(_))
        )
    }

    fn claim(&self, name: &str) -> Option<ClaimValue> {
        let bytes = hostcalls::get_property(vec![
            "metadata",
            "filter_metadata",
            JWT_AUTHN,
            self.metadata_key,
            name,
        ])
        .ok()
        .flatten()?;
        decode_envoy_claim(&bytes)
    }
}
