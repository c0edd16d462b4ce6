//! Scanning helpers: where a token that lies whole in the chunk ends, read without the
//! lexer's state, so the one-step paths can take a common token at once and leave anything
//! else to the byte-by-byte path, which finds the same end or the error.

/// The index of the first byte at or after `i` that a string cannot hold as is: a quote, a
/// backslash, a control character, or a byte of a multi-byte character (which the caller
/// validates); `chunk.len()` if none. Eight bytes at a time (SWAR): the lowest flagged byte
/// of each test is exact, so the first of all is too.
#[inline(always)]
pub(super) fn scan_plain(chunk: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(bytes) = chunk.get(i..i + 8) {
        let w = u64::from_le_bytes(bytes.try_into().expect("eight bytes"));
        let quote = w ^ (ONES * b'"' as u64);
        let backslash = w ^ (ONES * b'\\' as u64);
        let flagged = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | w.wrapping_sub(ONES * 0x20)
            | w)
            & HIGH;
        if flagged != 0 {
            return i + (flagged.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = chunk.get(i) {
        if !(0x20..0x80).contains(&b) || b == b'"' || b == b'\\' {
            break;
        }
        i += 1;
    }
    i
}

/// The end (the closing quote) of a string whose content starts at `i`, when it lies whole
/// in `chunk`, has no escape and is valid UTF-8; `None` otherwise (the caller reads it byte
/// by byte, which finds any error).
#[inline(always)]
pub(super) fn scan_plain_string(chunk: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = scan_plain(chunk, i);
        let b = *chunk.get(i)?;
        if b == b'"' {
            return Some(i);
        }
        if b < 0x80 {
            return None; // a backslash or a control character
        }
        i = scan_utf8_char(chunk, i)?;
    }
}

/// As [`scan_plain_string`], also passing over the escapes that need no state to validate
/// (all but surrogates, which the byte-by-byte path pairs): for skimming, which reads a value
/// only to validate it, and would otherwise hand every escaped string (an HTML narrative's
/// `\"` and `\n`) to the byte-by-byte path.
#[inline(always)]
pub(super) fn scan_skimmed_string(chunk: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i = scan_plain(chunk, i);
        let b = *chunk.get(i)?;
        i = match b {
            b'"' => return Some(i),
            b'\\' => scan_escape(chunk, i + 1)?,
            0x80.. => scan_utf8_char(chunk, i)?,
            _ => return None, // a control character
        };
    }
}

/// Past the escape whose backslash is just before `i`, when it is whole, valid and not a
/// surrogate.
#[inline(always)]
fn scan_escape(chunk: &[u8], i: usize) -> Option<usize> {
    match *chunk.get(i)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 1),
        b'u' => {
            let mut unit = 0;
            for &digit in chunk.get(i + 1..i + 5)? {
                unit = unit * 16 + char::from(digit).to_digit(16)?;
            }
            (!(0xD800..=0xDFFF).contains(&unit)).then_some(i + 5)
        }
        _ => None,
    }
}

/// Past one multi-byte UTF-8 character starting at `i`, when whole and valid (RFC 3629: no
/// overlong form, no surrogate, nothing above U+10FFFF).
#[inline(always)]
fn scan_utf8_char(chunk: &[u8], i: usize) -> Option<usize> {
    let (need, lo, hi) = utf8_lead(chunk[i])?;
    let need = usize::from(need);
    let rest = chunk.get(i + 1..i + 1 + need)?;
    if !(lo..=hi).contains(&rest[0]) || rest[1..].iter().any(|&c| !(0x80..=0xBF).contains(&c)) {
        return None;
    }
    Some(i + 1 + need)
}

/// For the first byte of a multi-byte UTF-8 character: how many bytes follow, and the range
/// the next one must be in (narrower than 0x80..=0xBF where RFC 3629 rules out overlong
/// forms, surrogates and code points above U+10FFFF); `None` if no character starts so.
#[inline(always)]
pub(super) fn utf8_lead(b: u8) -> Option<(u8, u8, u8)> {
    Some(match b {
        0xC2..=0xDF => (1, 0x80, 0xBF),
        0xE0 => (2, 0xA0, 0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
        0xED => (2, 0x80, 0x9F),
        0xF0 => (3, 0x90, 0xBF),
        0xF1..=0xF3 => (3, 0x80, 0xBF),
        0xF4 => (3, 0x80, 0x8F),
        _ => return None,
    })
}

/// The end of a number starting at `i` (RFC 8259 grammar), when it lies whole in `chunk`
/// and a delimiter follows it there; `None` otherwise.
#[inline(always)]
pub(super) fn scan_number(chunk: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| -> Option<usize> {
        while chunk.get(i)?.is_ascii_digit() {
            i += 1;
        }
        Some(i)
    };
    if chunk[i] == b'-' {
        i += 1;
    }
    match *chunk.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(i + 1)?,
        _ => return None,
    }
    if chunk.get(i)? == &b'.' {
        if !chunk.get(i + 1)?.is_ascii_digit() {
            return None;
        }
        i = digits(i + 2)?;
    }
    if matches!(chunk.get(i)?, b'e' | b'E') {
        i += 1;
        if matches!(chunk.get(i)?, b'+' | b'-') {
            i += 1;
        }
        if !chunk.get(i)?.is_ascii_digit() {
            return None;
        }
        i = digits(i + 1)?;
    }
    matches!(
        chunk.get(i)?,
        b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}'
    )
    .then_some(i)
}

/// The end of the literal `word` at `i`, when it lies whole in `chunk`.
#[inline(always)]
pub(super) fn scan_word(chunk: &[u8], i: usize, word: &[u8]) -> Option<usize> {
    (chunk.get(i..i + word.len())? == word).then_some(i + word.len())
}
