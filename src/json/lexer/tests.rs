use super::*;

/// The lexing failure of a refusal (every refusal here is one).
fn lexing(error: &EngineError) -> LexErrorKind {
    match &error.kind {
        ErrorKind::Lex(kind) => kind.clone(),
        other => panic!("not a lexing failure: {other}"),
    }
}

/// Lexes `doc` split into chunks of `size` and returns the events with absolute offsets.
fn events(doc: &[u8], size: usize) -> Result<Vec<(Event, Vec<u8>)>, EngineError> {
    let mut lexer = Lexer::new(64);
    let mut out = Vec::new();
    for chunk in doc.chunks(size.max(1)) {
        let mut pos = 0;
        while let Some(event) = lexer.next(chunk, &mut pos)? {
            let key = if event == Event::Key {
                lexer.key().to_vec()
            } else {
                vec![]
            };
            out.extend(flat(event).into_iter().map(|e| (e, key.clone())));
        }
        lexer.end_chunk(chunk.len());
    }
    if let Some(event) = lexer.finish()? {
        out.extend(flat(event).into_iter().map(|e| (e, vec![])));
    }
    Ok(out)
}

/// Positions depend on the split; compare kinds only.
fn normalise(event: Event) -> Event {
    match event {
        Event::ObjectStart(_) => Event::ObjectStart(0),
        Event::ObjectEnd(_) => Event::ObjectEnd(0),
        Event::ArrayStart(_) => Event::ArrayStart(0),
        Event::ArrayEnd(_) => Event::ArrayEnd(0),
        Event::ScalarStart(_, k) => Event::ScalarStart(0, k),
        Event::ScalarEnd(_) => Event::ScalarEnd(0),
        Event::Key => Event::Key,
        Event::Newline => Event::Newline,
        Event::Scalar { .. } => unreachable!("split by `flat`"),
    }
}

/// A whole scalar is a start and an end read at once: the same as when split.
fn flat(event: Event) -> Vec<Event> {
    match event {
        Event::Scalar { kind, .. } => vec![Event::ScalarStart(0, kind), Event::ScalarEnd(0)],
        event => vec![normalise(event)],
    }
}

fn error(doc: &[u8]) -> EngineError {
    let whole = events(doc, doc.len()).unwrap_err();
    for size in 1..doc.len().max(1) {
        assert_eq!(
            events(doc, size).unwrap_err(),
            whole,
            "split {size} of {doc:?}"
        );
    }
    whole
}

#[test]
fn keys_are_decoded_at_every_split() {
    let doc = br#"{"s\u0073n": 1, "caf\u00e9": [true], "\ud83d\ude00": null}"#;
    let whole = events(doc, doc.len()).unwrap();
    let keys: Vec<Vec<u8>> = whole
        .iter()
        .filter(|(e, _)| *e == Event::Key)
        .map(|(_, k)| k.clone())
        .collect();
    assert_eq!(
        keys,
        vec![
            b"ssn".to_vec(),
            "café".as_bytes().to_vec(),
            "😀".as_bytes().to_vec()
        ]
    );
    for size in 1..doc.len() {
        assert_eq!(events(doc, size).unwrap(), whole, "split {size}");
    }
}

#[test]
fn accepts_every_kind_of_value() {
    for doc in [
        &b"0"[..],
        b"-0",
        b"1.5e-3",
        b"-12E+7",
        b"\"x\"",
        b"true",
        b"false",
        b"null",
        b" [ ] ",
        b"{}",
        b"[1,[2,{\"a\":[]}]]",
        b"\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
        "\"é😀\"".as_bytes(),
    ] {
        for size in 1..=doc.len() {
            events(doc, size)
                .unwrap_or_else(|e| panic!("{:?} split {size}: {e}", String::from_utf8_lossy(doc)));
        }
    }
}

#[test]
fn refusals_name_the_offset_and_path() {
    let e = error(br#"{"a": [1, 2, {"b": tru}]}"#);
    assert_eq!(
        e.to_string(),
        "unexpected '}' where a JSON value was expected at byte 22 ($.a[2].b)"
    );
    let e = error(br#"{"a": 01}"#);
    assert_eq!(lexing(&e), LexErrorKind::InvalidNumber);
    assert_eq!(e.offset, 7);
    let e = error(b"[1,]");
    assert_eq!(
        lexing(&e),
        LexErrorKind::Unexpected {
            found: b']',
            expected: "a JSON value"
        }
    );
    let e = error(br#"{"a":1,}"#);
    assert_eq!(
        lexing(&e),
        LexErrorKind::Unexpected {
            found: b'}',
            expected: "a key"
        }
    );
    assert_eq!(lexing(&error(b"{} x")), LexErrorKind::TrailingData(b'x'));
    assert_eq!(lexing(&error(b"")), LexErrorKind::Empty);
    assert_eq!(lexing(&error(b"   ")), LexErrorKind::Empty);
    assert_eq!(
        lexing(&error(b"[1")),
        LexErrorKind::UnexpectedEnd {
            expected: "',' or the end of a container"
        }
    );
    assert_eq!(
        lexing(&error(b"\"a\x01\"")),
        LexErrorKind::ControlCharacterInString(1)
    );
    assert_eq!(
        lexing(&error(b"\"\\x\"")),
        LexErrorKind::InvalidEscape(b'x')
    );
    assert_eq!(
        lexing(&error(b"\"\\u12g4\"")),
        LexErrorKind::InvalidUnicodeEscape
    );
    assert_eq!(lexing(&error(b"\"\\ud800\"")), LexErrorKind::LoneSurrogate);
    assert_eq!(lexing(&error(b"\"\\udc00\"")), LexErrorKind::LoneSurrogate);
    assert_eq!(
        lexing(&error(b"\"\\ud800\\u0041\"")),
        LexErrorKind::LoneSurrogate
    );
    assert_eq!(lexing(&error(b"\"\xff\"")), LexErrorKind::InvalidUtf8);
    assert_eq!(lexing(&error(b"\"\xc0\xaf\"")), LexErrorKind::InvalidUtf8);
    assert_eq!(
        lexing(&error(b"\"\xed\xa0\x80\"")),
        LexErrorKind::InvalidUtf8
    );
    assert_eq!(lexing(&error(b"\"\xe2\x82\"")), LexErrorKind::InvalidUtf8);
    assert_eq!(lexing(&error(b"1.")), LexErrorKind::InvalidNumber);
    assert_eq!(lexing(&error(b"-")), LexErrorKind::InvalidNumber);
    assert_eq!(lexing(&error(b"1e")), LexErrorKind::InvalidNumber);
    assert_eq!(
        lexing(&error(b"+1")),
        LexErrorKind::Unexpected {
            found: b'+',
            expected: "a JSON value"
        }
    );
    assert_eq!(
        lexing(&error(b"nul")),
        LexErrorKind::UnexpectedEnd {
            expected: "the rest of a literal"
        }
    );
    assert_eq!(
        lexing(&error(b"\xef\xbb\xbf{}")),
        LexErrorKind::Unexpected {
            found: 0xef,
            expected: "a JSON value"
        }
    );
}

#[test]
fn depth_is_limited() {
    let mut lexer = Lexer::new(3);
    let doc = b"[[[[]]]]";
    let mut pos = 0;
    let mut result = Ok(None);
    for _ in 0..4 {
        result = lexer.next(doc, &mut pos);
    }
    assert_eq!(
        lexing(&result.unwrap_err()),
        LexErrorKind::TooDeep { limit: 3 }
    );
    let mut lexer = Lexer::new(3);
    let mut pos = 0;
    while lexer.next(b"[[[]]]", &mut pos).unwrap().is_some() {}
    assert!(lexer.finish().unwrap().is_none());
}

#[test]
fn keys_longer_than_the_limit_are_refused() {
    let mut doc = b"{\"".to_vec();
    doc.extend(std::iter::repeat_n(b'k', MAX_KEY_BYTES + 1));
    doc.extend(b"\":1}");
    assert_eq!(
        lexing(&events(&doc, 4096).unwrap_err()),
        LexErrorKind::KeyTooLong
    );
}

fn lines(doc: &[u8], size: usize) -> Result<Vec<Event>, EngineError> {
    let mut lexer = Lexer::with_framing(8, Framing::Lines);
    let mut out = Vec::new();
    for chunk in doc.chunks(size.max(1)) {
        let mut pos = 0;
        while let Some(event) = lexer.next(chunk, &mut pos)? {
            out.extend(flat(event));
        }
        lexer.end_chunk(chunk.len());
    }
    if let Some(event) = lexer.finish()? {
        out.extend(flat(event));
    }
    Ok(out)
}

#[test]
fn ndjson_records_blank_lines_and_errors() {
    let doc = b"{\"a\":1}\r\n\n [2] \n3";
    let whole = lines(doc, doc.len()).unwrap();
    assert_eq!(whole.iter().filter(|e| **e == Event::Newline).count(), 3);
    assert_eq!(whole.last(), Some(&Event::ScalarEnd(0)));
    for size in 1..doc.len() {
        assert_eq!(lines(doc, size).unwrap(), whole, "split {size}");
    }
    assert_eq!(lines(b"", 1).unwrap(), vec![]);
    assert_eq!(
        lexing(&lines(b"{\"a\":\n1}", 3).unwrap_err()),
        LexErrorKind::NewlineInRecord
    );
    assert_eq!(
        lexing(&lines(b"[1,\n2]", 3).unwrap_err()),
        LexErrorKind::NewlineInRecord
    );
    assert_eq!(
        lexing(&lines(b"{} {}", 3).unwrap_err()),
        LexErrorKind::TrailingData(b'{')
    );
    assert_eq!(
        lexing(&lines(b"{}\n{", 3).unwrap_err()),
        LexErrorKind::UnexpectedEnd {
            expected: "a key or '}'"
        }
    );
}

#[test]
fn captured_values_are_decoded() {
    let doc = br#"["a\u00e9\n", -1.5e3, true]"#;
    let mut lexer = Lexer::new(8);
    let mut pos = 0;
    let mut values = Vec::new();
    while let Some(event) = lexer.next(doc, &mut pos).unwrap() {
        match event {
            Event::ScalarStart(..) => lexer.capture_value(),
            Event::ScalarEnd(_) => values.push(String::from_utf8(lexer.value().to_vec()).unwrap()),
            Event::Scalar { start, end, kind } => {
                values.push(String::from_utf8(plain_value(doc, start, end, kind).to_vec()).unwrap())
            }
            _ => {}
        }
    }
    assert_eq!(values, vec!["aé\n", "-1.5e3", "true"]);
}
