//! What neither end may log: a bearer token, as text or hex, and anything
//! shaped like a JWT (the hub's token format, which a hub learns from its
//! peers rather than being told). Both ends' log writers pass every line
//! through [`redact`] before it is written. Pure: bytes in, bytes out.

/// Crates that log frame payloads or request heads (the `Authorization`
/// header) at trace level: each end holds them at `debug` at most, whatever
/// the user's filter asks for.
pub const PAYLOAD_LOGGERS: &[&str] = &["tungstenite", "tokio_tungstenite"];

/// A secret as it may appear in a log line: as itself, and as lower- and
/// upper-case hex (how byte buffers are printed).
pub fn encodings(secret: String) -> Vec<String> {
    let lower: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let upper = lower.to_ascii_uppercase();
    vec![secret, lower, upper]
}

/// `buf` with every secret in `secrets` and every JWT-shaped string replaced
/// by `[REDACTED]`; borrowed when there was nothing to replace.
pub fn redact<'b>(buf: &'b [u8], secrets: &[String]) -> std::borrow::Cow<'b, [u8]> {
    let mut out = std::borrow::Cow::Borrowed(buf);
    for secret in secrets {
        let s = secret.as_bytes();
        if out.windows(s.len()).any(|w| w == s) {
            let text = String::from_utf8_lossy(&out).replace(secret.as_str(), "[REDACTED]");
            out = std::borrow::Cow::Owned(text.into_bytes());
        }
    }
    match redact_jwts(&out) {
        Some(clean) => std::borrow::Cow::Owned(clean),
        None => out,
    }
}

/// Shortest JWT segment treated as one: `eyJ` plus a few characters of a JSON header.
const MIN_JWT_SEGMENT: usize = 8;

/// Replaces anything shaped like a JWT (`eyJ…` base64url, three dot-separated
/// segments), the hub's token format, for tokens the logger was not told about:
/// the hub learns them from the peer. Returns `None` when there is none.
pub fn redact_jwts(buf: &[u8]) -> Option<Vec<u8>> {
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut i = 0;
    while let Some(at) = buf[i..].windows(3).position(|w| w == b"eyJ") {
        let start = i + at;
        // Three segments of base64url separated by exactly two dots.
        let mut end = start;
        let mut segments = 0;
        loop {
            let seg_start = end;
            while end < buf.len() && is_b64(buf[end]) {
                end += 1;
            }
            // Header and claims are JSON objects, never this short; the signature may be anything.
            let min = if segments < 2 { MIN_JWT_SEGMENT } else { 1 };
            if end - seg_start < min {
                break;
            }
            segments += 1;
            if segments == 3 || end >= buf.len() || buf[end] != b'.' {
                break;
            }
            end += 1;
        }
        let preceded_by_b64 = start > 0 && is_b64(buf[start - 1]);
        if segments == 3 && !preceded_by_b64 {
            let o = out.get_or_insert_with(|| Vec::with_capacity(buf.len()));
            o.extend_from_slice(&buf[copied..start]);
            o.extend_from_slice(b"[REDACTED]");
            copied = end;
            i = end;
        } else {
            i = start + 3;
        }
    }
    let mut o = out?;
    o.extend_from_slice(&buf[copied..]);
    Some(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_of_every_secret() {
        let secrets = vec!["tok-123".to_owned(), "other-secret".to_owned()];
        let out = redact(b"a tok-123 b tok-123 c other-secret", &secrets);
        assert_eq!(&*out, b"a [REDACTED] b [REDACTED] c [REDACTED]");
        assert!(matches!(
            redact(b"clean line", &secrets),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn hex_encodings_of_a_secret_are_redacted() {
        let secrets: Vec<String> = encodings("tok-123".to_owned());
        // "tok-123" as bytes printed in hex, as a frame dump shows them.
        let out = redact(b"payload 746f6b2d313233 and 746F6B2D313233", &secrets);
        assert_eq!(&*out, b"payload [REDACTED] and [REDACTED]");
    }

    #[test]
    fn anything_shaped_like_a_jwt_is_redacted() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlX2J5dGVz";
        let line = format!(r#"recv {{"_meta":{{"aicp/auth":{{"token":"{jwt}"}}}}}} Bearer {jwt}"#);
        let out = redact(line.as_bytes(), &[]);
        let out = String::from_utf8(out.into_owned()).unwrap();
        assert!(!out.contains("eyJzdWIi"), "{out}");
        assert_eq!(out.matches("[REDACTED]").count(), 2, "{out}");
        // Not a JWT: a lone header-like word, or two segments, stay as they are.
        for clean in [
            "eyJhbGciOiJIUzI1NiJ9 alone",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9 end",
        ] {
            assert!(
                matches!(redact(clean.as_bytes(), &[]), std::borrow::Cow::Borrowed(_)),
                "{clean}"
            );
        }
    }
}
