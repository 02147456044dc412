//! A small JSON line writer for the hot path: keys and structure are literals written as bytes,
//! only values are formatted (integers with `itoa`, strings escaped per RFC 8259). serde_json
//! escapes every key of every object, which dominated the cost per event; tests parse the output
//! back with serde_json, so the two cannot drift apart unnoticed.

/// Appends JSON to a byte buffer.
pub struct JsonOut<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> JsonOut<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Self { buf }
    }

    /// Literal JSON text (structure and keys), written as is.
    pub fn raw(&mut self, s: &str) -> &mut Self {
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// A string value, quoted and escaped.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.buf.push(b'"');
        escape_into(s, self.buf);
        self.buf.push(b'"');
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    /// `"0x%0{digits}X"` as a string value.
    pub fn hex(&mut self, v: u64, digits: usize) -> &mut Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        self.buf.extend_from_slice(b"\"0x");
        for i in (0..digits).rev() {
            self.buf.push(HEX[((v >> (4 * i)) & 0xF) as usize]);
        }
        self.buf.push(b'"');
        self
    }
}

/// Escapes `s` for a JSON string: `"`, `\\`, C0 controls, DEL, C1 controls (U+0080..U+009F) and
/// the bidirectional overrides and isolates (U+202A..U+202E, U+2066..U+2069); everything else is
/// copied. Escaping more than RFC 8259 requires keeps a terminal or log viewer showing the output
/// from obeying control sequences (a one-character C1 CSI) or displaying a name reversed.
fn escape_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // (the escape, the UTF-8 length of the escaped character)
        let (escaped, len): (&[u8], usize) = match b {
            b'"' => (b"\\\"", 1),
            b'\\' => (b"\\\\", 1),
            b'\n' => (b"\\n", 1),
            b'\r' => (b"\\r", 1),
            b'\t' => (b"\\t", 1),
            0x00..=0x1F | 0x7F => (b"", 1),
            // U+0080..U+009F are C2 80..C2 9F in UTF-8.
            0xC2 if matches!(bytes.get(i + 1), Some(0x80..=0x9F)) => (b"", 2),
            // U+202A..U+202E are E2 80 AA..AE; U+2066..U+2069 are E2 81 A6..A9.
            0xE2 if matches!(
                (bytes.get(i + 1), bytes.get(i + 2)),
                (Some(0x80), Some(0xAA..=0xAE)) | (Some(0x81), Some(0xA6..=0xA9))
            ) =>
            {
                (b"", 3)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        if escaped.is_empty() {
            // `s` is a str: the `len` bytes at `i` are exactly one character.
            let c = s.get(i..i + len).and_then(|t| t.chars().next());
            push_unicode_escape(c.map_or(0xFFFD, u32::from), out);
        } else {
            out.extend_from_slice(escaped);
        }
        i += len;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// `\uXXXX` for a character of the Basic Multilingual Plane.
fn push_unicode_escape(c: u32, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((c >> shift) & 0xF) as usize]);
    }
}

/// A message as one line without raw control characters: newlines (from paths or OS errors)
/// would break the one-line promise, and escape sequences or bidi overrides in file names,
/// repository data or a network peer's text would reach the operator's terminal. Such
/// characters become `\u{..}` escapes, as [`is_escaped_char`] and `char::is_control` say.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_escaped_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is written as a `\u` escape (see [`escape_into`]).
pub fn is_escaped_char(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// serde_json's compact output with the same escaping as [`JsonOut`] (`fsense decode`).
pub struct SafeFormatter;

impl serde_json::ser::Formatter for SafeFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        // serde_json hands `"`, `\` and C0 controls to `write_char_escape`; fragments hold the rest.
        let mut buf = Vec::with_capacity(fragment.len());
        escape_into(fragment, &mut buf);
        writer.write_all(&buf)
    }
}

/// Writes `value` as one compact JSON value escaped like [`JsonOut`].
pub fn to_writer<W: std::io::Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(writer, SafeFormatter);
    value.serialize(&mut ser)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_render_as_json() {
        let mut buf = Vec::new();
        JsonOut::new(&mut buf)
            .raw("{\"a\":")
            .u64(u64::MAX)
            .raw(",\"b\":")
            .i64(-5)
            .raw(",\"c\":")
            .hex(0xC000_0034, 8)
            .raw(",\"d\":")
            .str("q\"\\\n\u{1}é")
            .raw("}");
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["a"], u64::MAX);
        assert_eq!(v["b"], -5);
        assert_eq!(v["c"], "0xC0000034");
        assert_eq!(v["d"], "q\"\\\n\u{1}é");
    }

    #[test]
    fn c1_controls_del_and_bidi_overrides_are_escaped() {
        let mut buf = Vec::new();
        JsonOut::new(&mut buf).str(
            "c1\u{9b}31mX del\u{7f} bidi\u{202e}cod.exe \u{2066}i\u{2069} \u{80}\u{a0}é\u{202f}",
        );
        let text = std::str::from_utf8(&buf).unwrap();
        assert_eq!(
            text,
            "\"c1\\u009b31mX del\\u007f bidi\\u202ecod.exe \\u2066i\\u2069 \\u0080\u{a0}é\u{202f}\""
        );
        let back: String = serde_json::from_slice(&buf).unwrap();
        assert!(back.contains('\u{202e}'));
    }

    #[test]
    fn serde_output_is_escaped_the_same_way() {
        let mut buf = Vec::new();
        to_writer(&mut buf, &serde_json::json!({"p": "a\u{9b}b\u{202e}\"\n"})).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf).unwrap(),
            "{\"p\":\"a\\u009bb\\u202e\\\"\\n\"}"
        );
    }

    proptest! {
        #[test]
        fn output_never_holds_a_control_or_bidi_character(s in any::<String>()) {
            let mut buf = Vec::new();
            JsonOut::new(&mut buf).str(&s);
            let text = String::from_utf8(buf).unwrap();
            prop_assert!(!text.chars().any(is_escaped_char), "{:?}", text);
        }

        #[test]
        fn any_string_survives_a_round_trip(s in any::<String>()) {
            let mut buf = Vec::new();
            JsonOut::new(&mut buf).str(&s);
            let back: String = serde_json::from_slice(&buf).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
