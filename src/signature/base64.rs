//! Standard base64 (RFC 4648, section 4, with `=` padding), the form `minisign` writes keys
//! and signatures in. Decoding only, and strict: the length must be a multiple of four,
//! padding only at the end, and the bits a padded group leaves over must be zero, so that one
//! text decodes to one value and no two texts to the same one.

/// Why a text is not base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base64Error {
    /// A character outside `A-Z a-z 0-9 + /` and the final `=`; its position (from 0).
    Character { at: usize, found: char },
    /// A length that is not a multiple of four.
    Length(usize),
    /// `=` anywhere but in the last one or two places, or leftover bits that are not zero.
    Padding,
}

impl std::fmt::Display for Base64Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Base64Error::Character { at, found } => {
                write!(f, "character {found:?} at position {}", at + 1)
            }
            Base64Error::Length(len) => write!(f, "{len} characters, not a multiple of four"),
            Base64Error::Padding => f.write_str("its '=' padding is not where base64 puts it"),
        }
    }
}

/// The value of one base64 character, or None.
fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes `text` (nothing around it: no spaces, no line breaks).
pub fn decode(text: &str) -> Result<Vec<u8>, Base64Error> {
    let bytes = text.as_bytes();
    if let Some((at, found)) = text.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(Base64Error::Character {
            at: text[..at].chars().count(),
            found,
        });
    }
    if bytes.len() % 4 != 0 {
        return Err(Base64Error::Length(bytes.len()));
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return Err(Base64Error::Padding);
    }
    let body = &bytes[..bytes.len() - padding];
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let mut bits: u32 = 0;
    let mut held = 0u32;
    for (at, &c) in body.iter().enumerate() {
        let Some(v) = value(c) else {
            return Err(if c == b'=' {
                Base64Error::Padding
            } else {
                Base64Error::Character {
                    at,
                    found: char::from(c),
                }
            });
        };
        bits = (bits << 6) | u32::from(v);
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    // What is left are the low bits of the last character, which base64 sets to zero.
    if bits != 0 {
        return Err(Base64Error::Padding);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rfc_4648_vectors() {
        for (text, plain) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(decode(text), Ok(plain.as_bytes().to_vec()), "{text}");
        }
        assert_eq!(decode("+/+/"), Ok(vec![0xfb, 0xff, 0xbf]));
    }

    #[test]
    fn refuses_what_is_not_canonical_base64() {
        assert_eq!(decode("Zm9"), Err(Base64Error::Length(3)));
        assert_eq!(
            decode("Zm9*"),
            Err(Base64Error::Character { at: 3, found: '*' })
        );
        assert_eq!(
            decode("Zm9é"),
            Err(Base64Error::Character { at: 3, found: 'é' })
        );
        assert_eq!(decode("Z==="), Err(Base64Error::Padding));
        assert_eq!(decode("Zm=v"), Err(Base64Error::Padding));
        // "Zh==" carries a non-zero bit after the byte it encodes.
        assert_eq!(decode("Zh=="), Err(Base64Error::Padding));
        assert_eq!(decode("Zm9v\n"), Err(Base64Error::Length(5)));
    }
}
