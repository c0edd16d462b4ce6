//! Decodes a serialised `google.protobuf.Struct` into JSON.
//!
//! Envoy hands a plugin its `configuration` as is when it is a `StringValue`, but as the
//! serialised protobuf message when it is a `Struct` (measured on Envoy 1.40). Operators
//! write either; both must load the same way. Only the three messages of `struct.proto` are
//! read, so a few lines replace a protobuf dependency.

use serde_json::{Map, Number, Value};

/// Why the bytes are not a `Struct`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

/// Nesting allowed while decoding; far beyond any configuration.
const MAX_NESTING: u32 = 128;

pub fn decode_struct(bytes: &[u8]) -> Result<Value, DecodeError> {
    decode_struct_at(bytes, 0)
}

fn decode_struct_at(bytes: &[u8], depth: u32) -> Result<Value, DecodeError> {
    if depth > MAX_NESTING {
        return Err(DecodeError("nesting too deep"));
    }
    let mut map = Map::new();
    let mut reader = Reader { bytes, pos: 0 };
    while let Some((field, wire)) = reader.tag()? {
        if field == 1 && wire == 2 {
            let entry = reader.bytes()?;
            let (key, value) = decode_entry(entry, depth)?;
            map.insert(key, value);
        } else {
            reader.skip(wire)?;
        }
    }
    Ok(Value::Object(map))
}

fn decode_entry(bytes: &[u8], depth: u32) -> Result<(String, Value), DecodeError> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut key = String::new();
    let mut value = Value::Null;
    while let Some((field, wire)) = reader.tag()? {
        match (field, wire) {
            (1, 2) => {
                key = String::from_utf8(reader.bytes()?.to_vec())
                    .map_err(|_| DecodeError("a key is not UTF-8"))?
            }
            (2, 2) => value = decode_value(reader.bytes()?, depth + 1)?,
            _ => reader.skip(wire)?,
        }
    }
    Ok((key, value))
}

fn decode_value(bytes: &[u8], depth: u32) -> Result<Value, DecodeError> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut value = Value::Null;
    while let Some((field, wire)) = reader.tag()? {
        value = match (field, wire) {
            (1, 0) => {
                reader.varint()?;
                Value::Null
            }
            (2, 1) => number(f64::from_le_bytes(reader.fixed64()?)),
            (3, 2) => Value::String(
                String::from_utf8(reader.bytes()?.to_vec())
                    .map_err(|_| DecodeError("a string is not UTF-8"))?,
            ),
            (4, 0) => Value::Bool(reader.varint()? != 0),
            (5, 2) => decode_struct_at(reader.bytes()?, depth + 1)?,
            (6, 2) => decode_list(reader.bytes()?, depth + 1)?,
            _ => {
                reader.skip(wire)?;
                continue;
            }
        };
    }
    Ok(value)
}

fn decode_list(bytes: &[u8], depth: u32) -> Result<Value, DecodeError> {
    let mut reader = Reader { bytes, pos: 0 };
    let mut list = Vec::new();
    while let Some((field, wire)) = reader.tag()? {
        if field == 1 && wire == 2 {
            list.push(decode_value(reader.bytes()?, depth + 1)?);
        } else {
            reader.skip(wire)?;
        }
    }
    Ok(Value::Array(list))
}

/// `Struct` numbers are doubles; whole ones become JSON integers so `"max_depth": 64`
/// reads the same from YAML as from JSON.
fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn tag(&mut self) -> Result<Option<(u64, u8)>, DecodeError> {
        if self.pos == self.bytes.len() {
            return Ok(None);
        }
        let tag = self.varint()?;
        Ok(Some((tag >> 3, (tag & 7) as u8)))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or(DecodeError("truncated varint"))?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn fixed64(&mut self) -> Result<[u8; 8], DecodeError> {
        let slice = self
            .bytes
            .get(self.pos..self.pos + 8)
            .ok_or(DecodeError("truncated double"))?;
        self.pos += 8;
        let mut out = [0u8; 8];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.varint()?).map_err(|_| DecodeError("length too large"))?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or(DecodeError("length too large"))?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(DecodeError("truncated field"))?;
        self.pos = end;
        Ok(slice)
    }

    fn skip(&mut self, wire: u8) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.fixed64().map(drop),
            2 => self.bytes().map(drop),
            5 => {
                self.pos = self
                    .pos
                    .checked_add(4)
                    .filter(|&p| p <= self.bytes.len())
                    .ok_or(DecodeError("truncated field"))?;
                Ok(())
            }
            _ => Err(DecodeError("unsupported wire type")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint(mut n: u64, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(number: u64, wire: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | wire, out);
        if wire == 2 {
            varint(payload.len() as u64, out);
        }
        out.extend_from_slice(payload);
    }

    /// Encodes JSON as protobuf `Struct`, the way Envoy serialises it.
    fn encode_value(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        match value {
            Value::Null => field(1, 0, &[0], &mut out),
            Value::Number(n) => field(2, 1, &n.as_f64().unwrap().to_le_bytes(), &mut out),
            Value::String(s) => field(3, 2, s.as_bytes(), &mut out),
            Value::Bool(b) => field(4, 0, &[*b as u8], &mut out),
            Value::Object(_) => field(5, 2, &encode_struct(value), &mut out),
            Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    field(1, 2, &encode_value(item), &mut list);
                }
                field(6, 2, &list, &mut out);
            }
        }
        out
    }

    fn encode_struct(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, item) in value.as_object().unwrap() {
            let mut entry = Vec::new();
            field(1, 2, key.as_bytes(), &mut entry);
            field(2, 2, &encode_value(item), &mut entry);
            field(1, 2, &entry, &mut out);
        }
        out
    }

    #[test]
    fn round_trips_a_configuration() {
        let config = json!({
            "unmatched": "allow",
            "limits": {"max_body_bytes": 8388608, "max_depth": 64},
            "policies": {"p": {"default_purpose": null, "purposes": {"r": {"fields": {"a": {"truncate": 2}}, "x": [true, 1.5, "s"]}}}}
        });
        assert_eq!(decode_struct(&encode_struct(&config)).unwrap(), config);
    }

    #[test]
    fn truncated_input_is_an_error() {
        let bytes = encode_struct(&json!({"a": "b"}));
        for len in 1..bytes.len() {
            assert!(decode_struct(&bytes[..len]).is_err(), "{len}");
        }
    }
}
