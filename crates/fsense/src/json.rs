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

/// Escapes `s` for a JSON string: `"`, `\` and control characters; everything else is copied.
fn escape_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1F => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escaped.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xF) as usize]);
        } else {
            out.extend_from_slice(escaped);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
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

    proptest! {
        #[test]
        fn any_string_survives_a_round_trip(s in any::<String>()) {
            let mut buf = Vec::new();
            JsonOut::new(&mut buf).str(&s);
            let back: String = serde_json::from_slice(&buf).unwrap();
            prop_assert_eq!(back, s);
        }
    }
}
