//! The JSON-RPC 2.0 envelope, modelled once. The relay forwards the original
//! text of every message; it parses only the envelope (`jsonrpc`, `id`, `method`,
//! and whether `result` or `error` is present) with [`RawValue`]s, so fields it
//! does not know pass through untouched and nothing is re-encoded on the hot path.
//!
//! Messages the bridge writes itself (errors, local answers) are built here too.

use std::borrow::Cow;
use std::fmt;

use crate::codes::{self, ErrorCode};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A request id, held as canonical JSON text (`5`, `"abc"`) so that a hub that
/// re-encodes an id (escapes, spacing) still matches the request it answers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Id(Box<str>);

impl Id {
    fn from_raw(raw: &RawValue) -> Id {
        let text = raw.get();
        let simple = text.bytes().all(|b| b.is_ascii_digit() || b == b'-')
            || (text.starts_with('"') && !text.contains('\\'));
        if simple {
            return Id(text.into());
        }
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => Id(v.to_string().into()),
            Err(_) => Id(text.into()),
        }
    }

    /// An id minted by the bridge for its own requests to the hub.
    pub fn bridge(n: u64) -> Id {
        Id(format!("\"aicp-bridge-{n}\"").into())
    }

    pub fn as_json(&self) -> &str {
        &self.0
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or(serde_json::Value::Null)
    }

    pub fn from_value(v: &serde_json::Value) -> Option<Id> {
        match v {
            serde_json::Value::String(_) | serde_json::Value::Number(_) => {
                Some(Id(v.to_string().into()))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The MCP methods the bridge treats specially; everything else is `Other`
/// and relays untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Initialize,
    Ping,
    ToolsList,
    ToolsCall,
    ResourcesList,
    ResourcesTemplatesList,
    ResourcesRead,
    PromptsList,
    PromptsGet,
    Complete,
    LoggingSetLevel,
    Other,
}

impl Method {
    /// The list requests a host may flood, answered from the list cache.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            Method::ToolsList
                | Method::ResourcesList
                | Method::ResourcesTemplatesList
                | Method::PromptsList
        )
    }

    pub fn from_name(name: &str) -> Method {
        match name {
            "initialize" => Method::Initialize,
            "ping" => Method::Ping,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "resources/list" => Method::ResourcesList,
            "resources/templates/list" => Method::ResourcesTemplatesList,
            "resources/read" => Method::ResourcesRead,
            "prompts/list" => Method::PromptsList,
            "prompts/get" => Method::PromptsGet,
            "completion/complete" => Method::Complete,
            "logging/setLevel" => Method::LoggingSetLevel,
            _ => Method::Other,
        }
    }
}

/// What a message is, judged from its envelope alone.
#[derive(Debug)]
pub enum Kind<'a> {
    Request {
        id: Id,
        method: Cow<'a, str>,
    },
    Notification {
        method: Cow<'a, str>,
    },
    Response {
        id: Id,
        is_error: bool,
    },
    /// A response whose id is null or missing: what sloppy hubs send in answer
    /// to a notification, or for a parse error they cannot attribute.
    OrphanResponse,
}

#[derive(Debug)]
pub struct Message<'a> {
    pub kind: Kind<'a>,
    pub params: Option<&'a RawValue>,
    pub result: Option<&'a RawValue>,
    pub error: Option<&'a RawValue>,
    /// False when the `jsonrpc` member is missing (tolerated from hubs only).
    pub has_version: bool,
}

/// Why a message is not a JSON-RPC message. The variants map onto the codes a
/// host must receive (-32700 parse error, -32600 invalid request).
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    #[error("parse error: {0}")]
    Parse(String),
    #[error("batches are not part of MCP; send one message per line")]
    Batch,
    #[error("a JSON-RPC message must be a JSON object")]
    NotObject,
    #[error("invalid request: {reason}")]
    Request { reason: String, id: Option<Id> },
}

impl Invalid {
    pub fn code(&self) -> ErrorCode {
        match self {
            Invalid::Parse(_) => codes::PARSE_ERROR,
            _ => codes::INVALID_REQUEST,
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    // `Option<&RawValue>` would read `null` as absent; an id of null is
    // present-and-invalid for a request, so capture the raw text instead.
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// Accepts exactly the JSON that `serde_json::Value` accepts (nesting within
/// its recursion limit, strings without lone surrogates, numbers within f64),
/// without building anything: every value is decoded and dropped.
struct Decodable;

impl<'de> Deserialize<'de> for Decodable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Decodable, D::Error> {
        d.deserialize_any(DecodableVisitor)
    }
}

struct DecodableVisitor;

impl<'de> serde::de::Visitor<'de> for DecodableVisitor {
    type Value = Decodable;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_str<E>(self, _: &str) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_unit<E>(self) -> Result<Decodable, E> {
        Ok(Decodable)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Decodable, A::Error> {
        while seq.next_element::<Decodable>()?.is_some() {}
        Ok(Decodable)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Decodable, A::Error> {
        while map.next_entry::<Decodable, Decodable>()?.is_some() {}
        Ok(Decodable)
    }
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// [`parse`] for what a host sends the bridge: strict, and decoded whole first.
/// The envelope parse skips over params without decoding them, and the bridge
/// forwards the text as it came; a hub decodes it, and answers what it cannot
/// read with an id of null that no one can match. So the bridge checks here
/// what a hub will decode (a hub, decoding anyway, needs only [`parse`]).
pub fn parse_host(text: &str) -> Result<Message<'_>, Invalid> {
    serde_json::from_str::<Decodable>(text).map_err(|e| Invalid::Parse(e.to_string()))?;
    parse(text, true)
}

/// Classifies one message. `strict` is for host input: it requires
/// `"jsonrpc": "2.0"` and a string or number id. Hub input is read leniently.
pub fn parse(text: &str, strict: bool) -> Result<Message<'_>, Invalid> {
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        Some(b'[') => return Err(Invalid::Batch),
        _ => {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Invalid::NotObject,
                Err(e) => Invalid::Parse(e.to_string()),
            });
        }
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Invalid::Parse(e.to_string())
        } else {
            Invalid::Request {
                reason: e.to_string(),
                id: extract_id(text.as_bytes()),
            }
        }
    })?;
    let id_ok = env.id.is_some_and(|raw| {
        let t = raw.get().as_bytes();
        t.first()
            .is_some_and(|&b| b == b'"' || b == b'-' || b.is_ascii_digit())
    });
    let invalid = |reason: &str| Invalid::Request {
        reason: reason.to_owned(),
        id: env.id.filter(|_| id_ok).map(Id::from_raw),
    };
    let has_version = env.jsonrpc.is_some();
    if strict && env.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
        return Err(invalid("\"jsonrpc\" must be \"2.0\""));
    }
    let kind = match (env.method, env.id) {
        (Some(method), Some(_)) if id_ok => Kind::Request {
            id: Id::from_raw(env.id.expect("checked")),
            method,
        },
        (Some(_), Some(_)) => return Err(invalid("\"id\" must be a string or a number")),
        (Some(method), None) => Kind::Notification { method },
        (None, id) => {
            if env.result.is_none() == env.error.is_none() {
                return Err(invalid(
                    "a response needs exactly one of \"result\" and \"error\"",
                ));
            }
            match id {
                Some(_) if id_ok => Kind::Response {
                    id: Id::from_raw(env.id.expect("checked")),
                    is_error: env.error.is_some(),
                },
                _ if strict => return Err(invalid("a response needs a string or number \"id\"")),
                _ => Kind::OrphanResponse,
            }
        }
    };
    Ok(Message {
        kind,
        params: env.params,
        result: env.result,
        error: env.error,
        has_version,
    })
}

/// Finds the top-level `"id"` in the first bytes of a message that could not be
/// parsed whole (oversized, or cut off), so its error still reaches the caller
/// that waits for it. Scans only what it is given; returns `None` if unsure.
pub fn extract_id(prefix: &[u8]) -> Option<Id> {
    let mut depth = 0usize;
    let mut i = 0;
    let n = prefix.len();
    let skip_string = |mut j: usize| -> Option<usize> {
        // j points just past the opening quote; returns the index past the closing one.
        while j < n {
            match prefix[j] {
                b'\\' => j += 2,
                b'"' => return Some(j + 1),
                _ => j += 1,
            }
        }
        None
    };
    while i < n {
        match prefix[i] {
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                i += 1;
            }
            b'"' => {
                let end = skip_string(i + 1)?;
                let key = &prefix[i + 1..end - 1];
                i = end;
                if depth != 1 || key != b"id" {
                    continue;
                }
                // Only a key is followed by a colon.
                while i < n && prefix[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i >= n || prefix[i] != b':' {
                    continue;
                }
                i += 1;
                while i < n && prefix[i].is_ascii_whitespace() {
                    i += 1;
                }
                let start = i;
                let end = if prefix.get(i) == Some(&b'"') {
                    skip_string(i + 1)?
                } else {
                    let mut j = i;
                    while j < n && (prefix[j] == b'-' || prefix[j].is_ascii_digit()) {
                        j += 1;
                    }
                    if j == start || j >= n {
                        return None;
                    }
                    j
                };
                let raw: &RawValue = serde_json::from_slice(&prefix[start..end]).ok()?;
                return Some(Id::from_raw(raw));
            }
            _ => i += 1,
        }
    }
    None
}

/// `{"jsonrpc":"2.0","id":…,"result":…}` around a result that is already JSON.
pub fn response(id: &Id, result: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#)
}

/// An error response carrying an error object that is already JSON.
pub fn error_with(id: &Id, error: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#)
}

/// A JSON-RPC error response. `id` is `None` only when it cannot be known.
pub fn error_response(
    id: Option<&Id>,
    code: ErrorCode,
    message: &str,
    data: Option<serde_json::Value>,
) -> String {
    error(
        id,
        &rmcp::model::ErrorData::new(code, message.to_owned(), data),
    )
}

/// The one builder of error responses, for both ends: `id` null when the
/// request's id could not be read.
pub fn error(id: Option<&Id>, error: &rmcp::model::ErrorData) -> String {
    let error = serde_json::to_string(error).expect("error data serializes");
    match id {
        Some(id) => format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{error}}}"#),
        None => format!(r#"{{"jsonrpc":"2.0","id":null,"error":{error}}}"#),
    }
}

/// A notification with JSON params (or none).
pub fn notification(method: &str, params: Option<&str>) -> String {
    let method = serde_json::to_string(method).expect("string serializes");
    match params {
        Some(p) => format!(r#"{{"jsonrpc":"2.0","method":{method},"params":{p}}}"#),
        None => format!(r#"{{"jsonrpc":"2.0","method":{method}}}"#),
    }
}

/// A request from the bridge itself.
pub fn request(id: &Id, method: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> Kind<'_> {
        parse(text, true).unwrap().kind
    }

    #[test]
    fn classifies_the_four_shapes() {
        assert!(
            matches!(kind(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#),
            Kind::Request { id, method } if id.as_json() == "1" && method == "tools/list")
        );
        assert!(
            matches!(kind(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
            Kind::Notification { method } if method == "notifications/initialized")
        );
        assert!(matches!(kind(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#),
            Kind::Response { id, is_error: false } if id.as_json() == "\"a\""));
        assert!(matches!(
            kind(r#"{"jsonrpc":"2.0","id":2,"error":{"code":1,"message":"x"}}"#),
            Kind::Response { is_error: true, .. }
        ));
        let orphan = parse(
            r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"x"}}"#,
            false,
        )
        .unwrap();
        assert!(matches!(orphan.kind, Kind::OrphanResponse));
        let orphan = parse(
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32601,"message":"x"}}"#,
            false,
        )
        .unwrap();
        assert!(matches!(orphan.kind, Kind::OrphanResponse));
    }

    #[test]
    fn host_input_is_refused_where_a_hub_could_not_decode_it() {
        let nested = |depth: usize| {
            format!(
                r#"{{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{{"name":"x","arguments":{}{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // What serde_json::Value (a hub) accepts, the check accepts, and no more.
        for text in [
            nested(120),
            nested(126),
            r#"{"jsonrpc":"2.0","id":9,"method":"x","params":{"s":"\ud800"}}"#.to_owned(),
            r#"{"jsonrpc":"2.0","id":9,"method":"x","params":{"n":1e400}}"#.to_owned(),
            r#"{"jsonrpc":"2.0","id":9,"method":"x","params":{"\udfff":1}}"#.to_owned(),
        ] {
            let hub_reads = serde_json::from_str::<serde_json::Value>(&text).is_ok();
            let host_check = parse_host(&text);
            assert_eq!(host_check.is_ok(), hub_reads, "{text:.80}: {host_check:?}");
            if !hub_reads {
                assert!(matches!(host_check, Err(Invalid::Parse(_))));
                // The relay answers it with the request's own id, found in the text.
                assert_eq!(extract_id(text.as_bytes()).unwrap().as_json(), "9");
                // Hub input stays lenient: the bridge relays what a hub sends.
                assert!(parse(&text, false).is_ok());
            }
        }
        assert!(parse_host(&nested(200)).is_err());
        for refused in [r#""\ud800""#, "1e400"] {
            let text =
                format!(r#"{{"jsonrpc":"2.0","id":9,"method":"x","params":{{"v":{refused}}}}}"#);
            assert!(
                matches!(parse_host(&text), Err(Invalid::Parse(_))),
                "{text}"
            );
        }
        assert!(
            parse_host(r#"{"jsonrpc":"2.0","id":9,"method":"x","params":{"s":"\ud83d\ude00"}}"#)
                .is_ok()
        );
    }

    #[test]
    fn rejects_what_is_not_a_message_with_the_right_code() {
        assert!(matches!(parse("{not json", true), Err(Invalid::Parse(_))));
        assert!(matches!(parse("[1,2]", true), Err(Invalid::Batch)));
        assert!(matches!(parse("42", true), Err(Invalid::NotObject)));
        assert!(matches!(parse("nul", true), Err(Invalid::Parse(_))));
        match parse(r#"{"jsonrpc":"1.0","id":7,"method":"x"}"#, true) {
            Err(Invalid::Request { id: Some(id), .. }) => assert_eq!(id.as_json(), "7"),
            other => panic!("{other:?}"),
        }
        match parse(r#"{"jsonrpc":"2.0","id":null,"method":"x"}"#, true) {
            Err(Invalid::Request { id: None, .. }) => {}
            other => panic!("{other:?}"),
        }
        match parse(r#"{"jsonrpc":"2.0","id":"q","method":5}"#, true) {
            Err(Invalid::Request { id: Some(id), .. }) => assert_eq!(id.as_json(), "\"q\""),
            other => panic!("{other:?}"),
        }
        assert!(parse(r#"{"jsonrpc":"2.0","id":3,"result":{},"error":{}}"#, true).is_err());
    }

    #[test]
    fn ids_compare_by_meaning_not_spelling() {
        let a = match kind(r#"{"jsonrpc":"2.0","id":"\u0061b","result":{}}"#) {
            Kind::Response { id, .. } => id,
            k => panic!("{k:?}"),
        };
        let b = match kind(r#"{"jsonrpc":"2.0","id":"ab","result":{}}"#) {
            Kind::Response { id, .. } => id,
            k => panic!("{k:?}"),
        };
        assert_eq!(a, b);
    }

    #[test]
    fn finds_the_id_in_a_truncated_prefix() {
        let p = br#"{"jsonrpc":"2.0","params":{"id":99,"x":"}\"id\":5"},"id": "abc","method":"tools/call","#;
        assert_eq!(extract_id(p).unwrap().as_json(), "\"abc\"");
        assert_eq!(
            extract_id(br#"{"id":12,"method":"#).unwrap().as_json(),
            "12"
        );
        assert!(extract_id(br#"{"method":"x","params":{"id":1}"#).is_none());
        // A number cut off at the end of the prefix could be longer: unsure.
        assert!(extract_id(br#"{"id":12"#).is_none());
    }

    #[test]
    fn built_messages_parse_back() {
        let id = Id::bridge(3);
        let e = error_response(Some(&id), codes::INVALID_REQUEST, "bad \"thing\"", None);
        assert!(matches!(
            parse(&e, true).unwrap().kind,
            Kind::Response { is_error: true, .. }
        ));
        let n = notification("notifications/tools/list_changed", None);
        assert!(matches!(
            parse(&n, true).unwrap().kind,
            Kind::Notification { .. }
        ));
        let r = request(&id, "initialize", "{}");
        assert!(matches!(
            parse(&r, true).unwrap().kind,
            Kind::Request { .. }
        ));
    }
}
