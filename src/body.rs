//! The response body pipeline: content decoding, the size limit, then the JSON engine.
//!
//! The limit applies to the *decoded* bytes, so a small compressed body that inflates
//! without bound (a zip bomb) is refused as soon as it crosses the limit, not after.

use std::fmt;
use std::io::Write;

use flate2::write::{GzDecoder, ZlibDecoder};

use crate::json::{EngineError, FilterStats, JsonFilter};
use crate::media_type::ContentEncoding;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// More than `limit` decoded bytes.
    TooLarge { limit: u64 },
    /// The compressed stream is corrupt or truncated.
    Decoding(String),
    /// The JSON engine refused the document.
    Json(EngineError),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::TooLarge { limit } => {
                write!(f, "the body is larger than the limit of {limit} bytes")
            }
            BodyError::Decoding(message) => {
                write!(f, "the compressed body could not be decoded: {message}")
            }
            BodyError::Json(error) => write!(f, "{error}"),
        }
    }
}

/// The most one chunk's write reserves for its output ahead of time.
const OUTPUT_RESERVE: usize = 16 << 10;

/// Receives decoded bytes: counts them against the limit and filters them.
struct Sink {
    filter: JsonFilter,
    out: Vec<u8>,
    decoded: u64,
    limit: u64,
    error: Option<BodyError>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("refused"));
        }
        self.decoded += buf.len() as u64;
        if self.decoded > self.limit {
            self.error = Some(BodyError::TooLarge { limit: self.limit });
            return Err(std::io::Error::other("too large"));
        }
        // The output is rarely larger than the input: one allocation for it instead of a
        // doubling per few bytes written (capped, so a large chunk reserves no more than
        // a small one would need to grow into).
        self.out.reserve(buf.len().min(OUTPUT_RESERVE));
        if let Err(error) = self.filter.write(buf, &mut self.out) {
            self.error = Some(BodyError::Json(error));
            return Err(std::io::Error::other("refused"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Decoder {
    Identity(Sink),
    Gzip(GzDecoder<Sink>),
    Deflate(ZlibDecoder<Sink>),
}

/// One response body on its way through the filter.
pub struct BodyFilter {
    decoder: Decoder,
    encoded: u64,
    /// The most bytes the body may have, as received and as decoded.
    limit: u64,
    failed: Option<BodyError>,
}

impl BodyFilter {
    pub fn new(filter: JsonFilter, encoding: ContentEncoding, limit: u64) -> BodyFilter {
        let sink = Sink {
            filter,
            out: Vec::new(),
            decoded: 0,
            limit,
            error: None,
        };
        let decoder = match encoding {
            ContentEncoding::Identity => Decoder::Identity(sink),
            ContentEncoding::Gzip => Decoder::Gzip(GzDecoder::new(sink)),
            ContentEncoding::Deflate => Decoder::Deflate(ZlibDecoder::new(sink)),
        };
        BodyFilter {
            decoder,
            encoded: 0,
            limit,
            failed: None,
        }
    }

    /// Feeds the next chunk as received; filtered output accumulates (see [`take_output`]).
    ///
    /// [`take_output`]: BodyFilter::take_output
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), BodyError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.encoded += chunk.len() as u64;
        // The received bytes count too: the host holds them as long as the filter does, and
        // a compressed stream can be larger than what it decodes to.
        if self.encoded > self.limit {
            let error = BodyError::TooLarge { limit: self.limit };
            self.failed = Some(error.clone());
            return Err(error);
        }
        let result = match &mut self.decoder {
            Decoder::Identity(sink) => sink.write_all(chunk),
            Decoder::Gzip(decoder) => decoder.write_all(chunk),
            Decoder::Deflate(decoder) => decoder.write_all(chunk),
        };
        self.check(result)
    }

    /// Ends the body: the compressed stream and the document must both be complete.
    pub fn finish(&mut self) -> Result<(), BodyError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = match &mut self.decoder {
            Decoder::Identity(_) => Ok(()),
            Decoder::Gzip(decoder) => decoder.try_finish(),
            Decoder::Deflate(decoder) => decoder.try_finish(),
        };
        self.check(result)?;
        let sink = self.sink_mut();
        let result = sink.filter.finish(&mut sink.out).map_err(BodyError::Json);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// The filtered bytes produced so far, handed over once.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.sink_mut().out)
    }

    /// Bytes received as encoded, and decoded.
    pub fn sizes(&self) -> (u64, u64) {
        (self.encoded, self.sink().decoded)
    }

    /// The engine's statistics, the tallies moved out: once, when the body is done.
    pub fn take_stats(&mut self) -> FilterStats {
        self.sink_mut().filter.take_stats()
    }

    /// Filtered bytes produced so far.
    pub fn bytes_out(&self) -> u64 {
        self.sink().filter.bytes_out()
    }

    fn check(&mut self, result: std::io::Result<()>) -> Result<(), BodyError> {
        let Err(io_error) = result else {
            return Ok(());
        };
        let error = self
            .sink_mut()
            .error
            .take()
            .unwrap_or_else(|| BodyError::Decoding(io_error.to_string()));
        self.failed = Some(error.clone());
        Err(error)
    }

    fn sink(&self) -> &Sink {
        match &self.decoder {
            Decoder::Identity(sink) => sink,
            Decoder::Gzip(decoder) => decoder.get_ref(),
            Decoder::Deflate(decoder) => decoder.get_ref(),
        }
    }

    fn sink_mut(&mut self) -> &mut Sink {
        match &mut self.decoder {
            Decoder::Identity(sink) => sink,
            Decoder::Gzip(decoder) => decoder.get_mut(),
            Decoder::Deflate(decoder) => decoder.get_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::action::Action;
    use crate::policy::path::FieldPath;
    use crate::policy::rules::{FieldRules, Rule};
    use crate::policy::transform::TransformContext;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::sync::Arc;

    fn filter() -> JsonFilter {
        let rules = FieldRules::compile(
            Action::Drop,
            &[Rule {
                path: FieldPath::parse("id").unwrap(),
                action: Action::Keep,
            }],
        )
        .unwrap();
        JsonFilter::new(Arc::new(rules), 16, TransformContext::default())
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn run(
        encoding: ContentEncoding,
        body: &[u8],
        chunk: usize,
        limit: u64,
    ) -> Result<String, BodyError> {
        let mut b = BodyFilter::new(filter(), encoding, limit);
        let mut out = Vec::new();
        for part in body.chunks(chunk.max(1)) {
            b.write(part)?;
            out.extend(b.take_output());
        }
        b.finish()?;
        out.extend(b.take_output());
        Ok(String::from_utf8(out).unwrap())
    }

    const DOC: &[u8] = br#"{"id":"p1","name":"Martin","ssn":"1840375123456"}"#;

    #[test]
    fn decodes_then_filters_at_any_chunking() {
        for chunk in [1, 3, 7, 1000] {
            assert_eq!(
                run(ContentEncoding::Identity, DOC, chunk, 1000).unwrap(),
                r#"{"id":"p1"}"#
            );
            assert_eq!(
                run(ContentEncoding::Gzip, &gzip(DOC), chunk, 1000).unwrap(),
                r#"{"id":"p1"}"#
            );
            assert_eq!(
                run(ContentEncoding::Deflate, &zlib(DOC), chunk, 1000).unwrap(),
                r#"{"id":"p1"}"#
            );
        }
    }

    #[test]
    fn the_limit_counts_decoded_bytes() {
        let bomb_source = format!("{{\"id\":1,\"pad\":\"{}\"}}", "0".repeat(10_000_000));
        let bomb = gzip(bomb_source.as_bytes());
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(
            run(ContentEncoding::Gzip, &bomb, 4096, 1_000_000),
            Err(BodyError::TooLarge { limit: 1_000_000 })
        );
        assert_eq!(
            run(ContentEncoding::Identity, DOC, 5, 10),
            Err(BodyError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn the_limit_counts_received_bytes_too() {
        // Stored deflate blocks: the gzip stream is larger than the document it holds.
        let mut e = GzEncoder::new(Vec::new(), Compression::none());
        e.write_all(DOC).unwrap();
        let stored = e.finish().unwrap();
        assert!(stored.len() > DOC.len() + 20, "{}", stored.len());
        let limit = DOC.len() as u64 + 10;
        assert_eq!(
            run(ContentEncoding::Gzip, &stored, 1000, limit),
            Err(BodyError::TooLarge { limit })
        );
        assert_eq!(
            run(ContentEncoding::Gzip, &stored, 1000, stored.len() as u64).unwrap(),
            r#"{"id":"p1"}"#
        );
    }

    #[test]
    fn corrupt_or_truncated_streams_are_refused() {
        let good = gzip(DOC);
        let truncated = &good[..good.len() - 6];
        assert!(matches!(
            run(ContentEncoding::Gzip, truncated, 8, 1000),
            Err(BodyError::Decoding(_)) | Err(BodyError::Json(_))
        ));
        let mut corrupt = good.clone();
        let last = corrupt.len() - 5;
        corrupt[last] ^= 0xff; // the CRC
        assert!(run(ContentEncoding::Gzip, &corrupt, 8, 1000).is_err());
        assert!(matches!(
            run(ContentEncoding::Gzip, DOC, 8, 1000),
            Err(BodyError::Decoding(_))
        ));
        assert!(matches!(
            run(ContentEncoding::Deflate, &gzip(DOC), 8, 1000),
            Err(BodyError::Decoding(_))
        ));
    }

    #[test]
    fn json_errors_inside_compressed_bodies_are_json_errors() {
        assert!(matches!(
            run(ContentEncoding::Gzip, &gzip(b"{\"id\":}"), 4, 1000),
            Err(BodyError::Json(_))
        ));
    }
}
