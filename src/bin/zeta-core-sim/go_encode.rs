//! How Go writes text: `strconv.Quote`, the JSON scanner's `quoteChar`, `encoding/json`'s
//! string escaping and its compaction of a `json.RawMessage`.

use crate::go_json::is_json_space;

/// Go's `encoding/json` compaction of a `json.RawMessage` when it is encoded with HTML escaping
/// (the `json.Encoder` default): white space outside strings dropped, `<`, `>`, `&`, U+2028 and
/// U+2029 escaped.
pub(crate) fn compact_json(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if matches!(c, b'<' | b'>' | b'&') {
            out.extend_from_slice(format!("\\u00{c:02x}").as_bytes());
        } else if c == 0xe2
            && raw.get(i + 1) == Some(&0x80)
            && matches!(raw.get(i + 2), Some(0xa8 | 0xa9))
        {
            out.extend_from_slice(format!("\\u202{:x}", raw[i + 2] & 0xf).as_bytes());
            i += 2;
        } else if in_string {
            out.push(c);
            if c == b'\\' {
                if let Some(&next) = raw.get(i + 1) {
                    out.push(next);
                    i += 1;
                }
            } else if c == b'"' {
                in_string = false;
            }
        } else if !is_json_space(c) {
            in_string = c == b'"';
            out.push(c);
        }
        i += 1;
    }
    out
}

/// Wraps `s` in double quotes, with `"` and `\` escaped by a backslash and every other
/// character written by `write`: the frame Go's JSON encoder and `strconv.Quote` share.
fn quote_with(s: &str, write: impl Fn(&mut String, char)) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => write(&mut out, c),
        }
    }
    out.push('"');
    out
}

/// Encodes a string as Go's `encoding/json` does with HTML escaping.
pub(crate) fn go_json_string(s: &str) -> String {
    quote_with(s, |out, c| match c {
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '<' | '>' | '&' | '\0'..='\u{1f}' => out.push_str(&format!("\\u{:04x}", c as u32)),
        '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push(c),
    })
}

/// An approximation of Go's `strconv.IsPrint`: graphic characters and the ASCII space, without
/// other spaces, format and private-use characters (unassigned code points are not known here).
fn go_is_print(c: char) -> bool {
    let u = c as u32;
    if u < 0x80 {
        return (0x20..0x7f).contains(&u);
    }
    !(c.is_control()
        || matches!(u,
            0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x890 | 0x891 | 0x8e2
            | 0x1680 | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064
            | 0x2066..=0x206f | 0x3000 | 0xd800..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
            | 0x110bd | 0x110cd | 0x13430..=0x1343f | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
            | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..)
        || (u & 0xfffe) == 0xfffe)
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    quote_with(s, |out, c| match c {
        c if go_is_print(c) => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    })
}

/// Go's `quoteChar` from the JSON scanner: a byte shown as a quoted character.
pub(crate) fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        _ => {
            let quoted = go_quote(&char::from(c).to_string());
            format!("'{}'", &quoted[1..quoted.len() - 1])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_encoding_helpers() {
        assert_eq!(
            compact_json("{ \"a\" : [1, 2],\n\"b<\": \"x y&\u{2028}\" }".as_bytes()),
            b"{\"a\":[1,2],\"b\\u003c\":\"x y\\u0026\\u2028\"}".to_vec()
        );
        assert_eq!(compact_json(b"\"a\\\" b\""), b"\"a\\\" b\"".to_vec());
        assert_eq!(
            go_json_string("v1<\"\\\n\u{8}\u{1}\u{2029}\u{e9}"),
            "\"v1\\u003c\\\"\\\\\\n\\b\\u0001\\u2029\u{e9}\""
        );
        assert_eq!(
            go_quote("a\"\\\t\u{7f}\u{80}\u{a0}\u{10ffff}"),
            "\"a\\\"\\\\\\t\\x7f\\u0080\\u00a0\\U0010ffff\""
        );
        assert_eq!(quote_char(b'"'), "'\"'");
        assert_eq!(quote_char(b'\\'), "'\\\\'");
        assert_eq!(quote_char(0xff), "'\u{ff}'");
    }
}
