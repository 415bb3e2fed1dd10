//! Go's `encoding/json` decoder: the byte-at-a-time scanner with its exact error texts, the
//! first value of a body as `json.Decoder.Decode` finds it, and walking and unquoting a text
//! the scanner has accepted.

use crate::go_encode::quote_char;

/// What Go's JSON scanner returns for one byte (the subset the decoder looks at).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Continue,
    EndObject,
    EndArray,
    End,
    Error,
}

/// What the scanner is inside of, kept on its stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nest {
    ObjectKey,
    ObjectValue,
    ArrayValue,
}

/// The scanner's state: which function Go's scanner would call for the next byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScanState {
    BeginValue,
    BeginValueOrEmpty,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    EndTop,
    InString,
    InStringEsc,
    InStringEscU(u8),
    Neg,
    Zero,
    One,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    Literal(&'static [u8], usize),
    Error,
}

/// Go's nesting limit for JSON values.
const MAX_NESTING: usize = 10000;

/// A byte-at-a-time JSON syntax checker with the same states and error texts as Go's
/// `encoding/json` scanner, so that a request body is accepted or refused with the same message.
struct Scanner {
    state: ScanState,
    stack: Vec<Nest>,
    error: Option<String>,
}

/// Whether Go's JSON scanner treats the byte as white space.
pub(crate) fn is_json_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            state: ScanState::BeginValue,
            stack: Vec::new(),
            error: None,
        }
    }

    /// Records a syntax error about byte `c`.
    fn fail(&mut self, c: u8, context: &str) -> Step {
        self.state = ScanState::Error;
        self.error = Some(format!("invalid character {} {context}", quote_char(c)));
        Step::Error
    }

    /// Enters an object or array, enforcing Go's depth limit.
    fn push(&mut self, c: u8, nest: Nest, next: ScanState) -> Step {
        self.stack.push(nest);
        if self.stack.len() > MAX_NESTING {
            return self.fail(c, "exceeded max depth");
        }
        self.state = next;
        Step::Continue
    }

    /// Leaves an object or array.
    fn pop(&mut self) {
        self.stack.pop();
        self.state = if self.stack.is_empty() {
            ScanState::EndTop
        } else {
            ScanState::EndValue
        };
    }

    fn begin_value(&mut self, c: u8) -> Step {
        if is_json_space(c) {
            return Step::Continue;
        }
        self.state = match c {
            b'{' => return self.push(c, Nest::ObjectKey, ScanState::BeginStringOrEmpty),
            b'[' => return self.push(c, Nest::ArrayValue, ScanState::BeginValueOrEmpty),
            b'"' => ScanState::InString,
            b'-' => ScanState::Neg,
            b'0' => ScanState::Zero,
            b'1'..=b'9' => ScanState::One,
            b't' => ScanState::Literal(b"true", 1),
            b'f' => ScanState::Literal(b"false", 1),
            b'n' => ScanState::Literal(b"null", 1),
            _ => return self.fail(c, "looking for beginning of value"),
        };
        Step::Continue
    }

    fn end_value(&mut self, c: u8) -> Step {
        let Some(&top) = self.stack.last() else {
            self.state = ScanState::EndTop;
            return self.end_top(c);
        };
        if is_json_space(c) {
            self.state = ScanState::EndValue;
            return Step::Continue;
        }
        match top {
            Nest::ObjectKey if c == b':' => {
                *self.stack.last_mut().expect("stack is not empty") = Nest::ObjectValue;
                self.state = ScanState::BeginValue;
                Step::Continue
            }
            Nest::ObjectKey => self.fail(c, "after object key"),
            Nest::ObjectValue if c == b',' => {
                *self.stack.last_mut().expect("stack is not empty") = Nest::ObjectKey;
                self.state = ScanState::BeginString;
                Step::Continue
            }
            Nest::ObjectValue if c == b'}' => {
                self.pop();
                Step::EndObject
            }
            Nest::ObjectValue => self.fail(c, "after object key:value pair"),
            Nest::ArrayValue if c == b',' => {
                self.state = ScanState::BeginValue;
                Step::Continue
            }
            Nest::ArrayValue if c == b']' => {
                self.pop();
                Step::EndArray
            }
            Nest::ArrayValue => self.fail(c, "after array element"),
        }
    }

    fn end_top(&mut self, c: u8) -> Step {
        if !is_json_space(c) {
            // Go complains about the byte on the next call but still reports the end now.
            self.fail(c, "after top-level value");
        }
        Step::End
    }

    /// Feeds one byte.
    fn step(&mut self, c: u8) -> Step {
        match self.state {
            ScanState::BeginValue => self.begin_value(c),
            ScanState::BeginValueOrEmpty => self.begin_value_or_empty(c),
            ScanState::BeginStringOrEmpty => self.begin_string_or_empty(c),
            ScanState::BeginString => self.begin_string(c),
            ScanState::EndValue => self.end_value(c),
            ScanState::EndTop => self.end_top(c),
            ScanState::InString => self.in_string(c),
            ScanState::InStringEsc => self.in_string_esc(c),
            ScanState::InStringEscU(n) => self.in_string_esc_u(c, n),
            ScanState::Neg => self.neg(c),
            ScanState::One if c.is_ascii_digit() => Step::Continue,
            ScanState::One | ScanState::Zero => self.after_integer(c),
            ScanState::Dot => self.dot(c),
            ScanState::Dot0 if c.is_ascii_digit() => Step::Continue,
            ScanState::Dot0 => self.exponent_or_end(c),
            ScanState::E if c == b'+' || c == b'-' => {
                self.state = ScanState::ESign;
                Step::Continue
            }
            ScanState::E | ScanState::ESign => self.exponent_digit(c),
            ScanState::E0 if c.is_ascii_digit() => Step::Continue,
            ScanState::E0 => self.end_value(c),
            ScanState::Literal(word, at) => self.in_literal(c, word, at),
            ScanState::Error => Step::Error,
        }
    }

    /// After `[`: a value or `]`.
    fn begin_value_or_empty(&mut self, c: u8) -> Step {
        if is_json_space(c) {
            Step::Continue
        } else if c == b']' {
            self.end_value(c)
        } else {
            self.begin_value(c)
        }
    }

    /// After `{`: a key string or `}`.
    fn begin_string_or_empty(&mut self, c: u8) -> Step {
        if is_json_space(c) {
            Step::Continue
        } else if c == b'}' {
            *self.stack.last_mut().expect("inside an object") = Nest::ObjectValue;
            self.end_value(c)
        } else {
            self.state = ScanState::BeginString;
            self.step(c)
        }
    }

    /// After `,` in an object: a key string.
    fn begin_string(&mut self, c: u8) -> Step {
        if is_json_space(c) {
            Step::Continue
        } else if c == b'"' {
            self.state = ScanState::InString;
            Step::Continue
        } else {
            self.fail(c, "looking for beginning of object key string")
        }
    }

    /// Inside a string.
    fn in_string(&mut self, c: u8) -> Step {
        match c {
            b'"' => self.state = ScanState::EndValue,
            b'\\' => self.state = ScanState::InStringEsc,
            0..=0x1f => return self.fail(c, "in string literal"),
            _ => {}
        }
        Step::Continue
    }

    /// After a backslash in a string.
    fn in_string_esc(&mut self, c: u8) -> Step {
        match c {
            b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => {
                self.state = ScanState::InString
            }
            b'u' => self.state = ScanState::InStringEscU(0),
            _ => return self.fail(c, "in string escape code"),
        }
        Step::Continue
    }

    /// After `\u` and `n` hexadecimal digits in a string.
    fn in_string_esc_u(&mut self, c: u8, n: u8) -> Step {
        if !c.is_ascii_hexdigit() {
            return self.fail(c, "in \\u hexadecimal character escape");
        }
        self.state = if n == 3 {
            ScanState::InString
        } else {
            ScanState::InStringEscU(n + 1)
        };
        Step::Continue
    }

    /// After the `-` of a number.
    fn neg(&mut self, c: u8) -> Step {
        self.state = match c {
            b'0' => ScanState::Zero,
            b'1'..=b'9' => ScanState::One,
            _ => return self.fail(c, "in numeric literal"),
        };
        Step::Continue
    }

    /// After the integer part of a number: `.` starts the fraction.
    fn after_integer(&mut self, c: u8) -> Step {
        if c == b'.' {
            self.state = ScanState::Dot;
            return Step::Continue;
        }
        self.exponent_or_end(c)
    }

    /// After the digits of a number: `e` or `E` starts the exponent, anything else ends it.
    fn exponent_or_end(&mut self, c: u8) -> Step {
        if c == b'e' || c == b'E' {
            self.state = ScanState::E;
            return Step::Continue;
        }
        self.end_value(c)
    }

    /// After the decimal point of a number.
    fn dot(&mut self, c: u8) -> Step {
        if !c.is_ascii_digit() {
            return self.fail(c, "after decimal point in numeric literal");
        }
        self.state = ScanState::Dot0;
        Step::Continue
    }

    /// After the `e` of an exponent, or its sign.
    fn exponent_digit(&mut self, c: u8) -> Step {
        if !c.is_ascii_digit() {
            return self.fail(c, "in exponent of numeric literal");
        }
        self.state = ScanState::E0;
        Step::Continue
    }

    /// Inside `true`, `false` or `null`, `at` bytes in.
    fn in_literal(&mut self, c: u8, word: &'static [u8], at: usize) -> Step {
        if c != word[at] {
            let context = format!(
                "in literal {} (expecting {})",
                String::from_utf8_lossy(word),
                quote_char(word[at])
            );
            return self.fail(c, &context);
        }
        self.state = if at + 1 == word.len() {
            ScanState::EndValue
        } else {
            ScanState::Literal(word, at + 1)
        };
        Step::Continue
    }
}

/// Finds the first JSON value in `body` the way Go's `json.Decoder.Decode` does, returning it
/// without the white space around it, or Go's error text (`EOF`, `unexpected EOF`, or a syntax
/// error). Anything after the first value is ignored, as the decoder does.
pub(crate) fn first_json_value(body: &[u8]) -> Result<&[u8], String> {
    let mut scanner = Scanner::new();
    let mut end = None;
    for (i, &c) in body.iter().enumerate() {
        match scanner.step(c) {
            Step::End => {
                end = Some(i);
                break;
            }
            Step::EndObject | Step::EndArray if scanner.stack.is_empty() => {
                end = Some(i + 1);
                break;
            }
            Step::Error => return Err(scanner.error.unwrap_or_default()),
            _ => {}
        }
    }
    let end = match end {
        Some(end) => end,
        None if scanner.step(b' ') == Step::End => body.len(),
        None if body.iter().any(|&c| !is_json_space(c)) => return Err("unexpected EOF".to_string()),
        None => return Err("EOF".to_string()),
    };
    let start = body.iter().position(|&c| !is_json_space(c)).unwrap_or(end);
    Ok(&body[start..end])
}

/// Skips white space in a JSON text that is known to be valid.
pub(crate) fn skip_json_space(v: &[u8], i: &mut usize) {
    while *i < v.len() && is_json_space(v[*i]) {
        *i += 1;
    }
}

/// Skips one string (starting at its quote) in a JSON text known to be valid.
pub(crate) fn skip_json_string(v: &[u8], i: &mut usize) {
    *i += 1;
    while *i < v.len() {
        match v[*i] {
            b'\\' => *i += 2,
            b'"' => {
                *i += 1;
                return;
            }
            _ => *i += 1,
        }
    }
}

/// Skips one value in a JSON text known to be valid, without recursion.
pub(crate) fn skip_json_value(v: &[u8], i: &mut usize) {
    let mut depth = 0usize;
    loop {
        if *i >= v.len() {
            return;
        }
        match v[*i] {
            b'"' => skip_json_string(v, i),
            b'{' | b'[' => {
                depth += 1;
                *i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                *i += 1;
            }
            c if is_json_space(c) || c == b',' || c == b':' => *i += 1,
            _ => {
                while *i < v.len()
                    && !matches!(v[*i], b',' | b'}' | b']' | b':')
                    && !is_json_space(v[*i])
                {
                    *i += 1;
                }
            }
        }
        if depth == 0 {
            return;
        }
    }
}

/// The name Go's `UnmarshalTypeError` gives the kind of a JSON value.
pub(crate) fn json_kind(first: u8) -> &'static str {
    match first {
        b'{' => "object",
        b'[' => "array",
        b'"' => "string",
        b't' | b'f' => "bool",
        b'n' => "null",
        _ => "number",
    }
}

/// Decodes one UTF-8 character at the start of `bytes` the way Go's `utf8.DecodeRune` does,
/// returning U+FFFD and length 1 for an invalid sequence.
fn decode_rune(bytes: &[u8]) -> (char, usize) {
    let want = match bytes.first() {
        Some(0..=0x7f) => 1,
        Some(0xc2..=0xdf) => 2,
        Some(0xe0..=0xef) => 3,
        Some(0xf0..=0xf4) => 4,
        _ => return ('\u{fffd}', 1),
    };
    match bytes.get(..want).and_then(|b| std::str::from_utf8(b).ok()) {
        Some(s) => (s.chars().next().unwrap_or('\u{fffd}'), want),
        None => ('\u{fffd}', 1),
    }
}

/// Decodes a valid JSON string literal (with its quotes) as Go does: bad UTF-8 and lone
/// surrogates become U+FFFD.
pub(crate) fn json_unquote(v: &[u8]) -> String {
    let inner = v.get(1..v.len().saturating_sub(1)).unwrap_or_default();
    let mut out = String::with_capacity(inner.len());
    let hex4 = |at: usize| -> Option<u32> {
        let digits = inner.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\\' {
            let (c, len) = decode_rune(&inner[i..]);
            out.push(c);
            i += len;
            continue;
        }
        let escape = inner.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        match escape {
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'n' => out.push('\n'),
            b'r' => out.push('\r'),
            b't' => out.push('\t'),
            b'u' => {
                let unit = hex4(i).unwrap_or(0xfffd);
                i += 4;
                if !(0xd800..0xe000).contains(&unit) {
                    out.push(char::from_u32(unit).unwrap_or('\u{fffd}'));
                    continue;
                }
                // A surrogate pair is two escapes; anything else is a lone surrogate.
                let low = if inner.get(i..i + 2) == Some(b"\\u") {
                    hex4(i + 2)
                } else {
                    None
                };
                match low {
                    Some(low) if unit < 0xdc00 && (0xdc00..0xe000).contains(&low) => {
                        let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                        out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        i += 6;
                    }
                    _ => out.push('\u{fffd}'),
                }
            }
            other => out.push(char::from(other)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_error(body: &str) -> String {
        first_json_value(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn decoder_errors_match_go() {
        assert_eq!(scan_error(""), "EOF");
        assert_eq!(scan_error(" \n\t"), "EOF");
        assert_eq!(scan_error("{"), "unexpected EOF");
        assert_eq!(scan_error("tru"), "unexpected EOF");
        assert_eq!(scan_error("-"), "unexpected EOF");
        assert_eq!(
            scan_error("x"),
            "invalid character 'x' looking for beginning of value"
        );
        assert_eq!(
            scan_error("'a'"),
            "invalid character '\\'' looking for beginning of value"
        );
        assert_eq!(
            scan_error("{\"a\" 1}"),
            "invalid character '1' after object key"
        );
        assert_eq!(
            scan_error("{\"a\":1 \"b\"}"),
            "invalid character '\"' after object key:value pair"
        );
        assert_eq!(
            scan_error("{\"a\":1,}"),
            "invalid character '}' looking for beginning of object key string"
        );
        assert_eq!(
            scan_error("{a:1}"),
            "invalid character 'a' looking for beginning of object key string"
        );
        assert_eq!(
            scan_error("[1,]"),
            "invalid character ']' looking for beginning of value"
        );
        assert_eq!(
            scan_error("[1 2]"),
            "invalid character '2' after array element"
        );
        assert_eq!(
            scan_error("\u{e9}"),
            "invalid character '\u{c3}' looking for beginning of value"
        );
        assert_eq!(
            scan_error(&"[".repeat(10_001)),
            "invalid character '[' exceeded max depth"
        );
    }

    #[test]
    fn decoder_errors_in_literals_strings_and_numbers_match_go() {
        assert_eq!(
            scan_error("trux"),
            "invalid character 'x' in literal true (expecting 'e')"
        );
        assert_eq!(scan_error("nul"), "unexpected EOF");
        assert_eq!(
            scan_error("fx"),
            "invalid character 'x' in literal false (expecting 'a')"
        );
        assert_eq!(
            scan_error("\"a\u{1}\""),
            "invalid character '\\x01' in string literal"
        );
        assert_eq!(
            scan_error("\"a\nb\""),
            "invalid character '\\n' in string literal"
        );
        assert_eq!(
            scan_error("\"\\q\""),
            "invalid character 'q' in string escape code"
        );
        assert_eq!(
            scan_error("\"\\u12x4\""),
            "invalid character 'x' in \\u hexadecimal character escape"
        );
        assert_eq!(scan_error("-a"), "invalid character 'a' in numeric literal");
        assert_eq!(
            scan_error("1.x"),
            "invalid character 'x' after decimal point in numeric literal"
        );
        assert_eq!(
            scan_error("1e+x"),
            "invalid character 'x' in exponent of numeric literal"
        );
    }

    #[test]
    fn decoder_takes_the_first_value_only() {
        assert_eq!(first_json_value(b" {} x"), Ok(&b"{}"[..]));
        assert_eq!(first_json_value(b"123"), Ok(&b"123"[..]));
        assert_eq!(first_json_value(b"123x"), Ok(&b"123"[..]));
        assert_eq!(first_json_value(b"[1,[2]]]"), Ok(&b"[1,[2]]"[..]));
        assert_eq!(first_json_value(b"\"a\"\"b\""), Ok(&b"\"a\""[..]));
        assert!(first_json_value("[".repeat(10_000).as_bytes()).is_err());
    }
}
