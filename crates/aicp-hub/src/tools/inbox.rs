//! Receiving: `read_inbox`, the inbox contract. It returns the caller's
//! unread messages, oldest first, in pages of bounded size, and marks what it
//! returned as read (unless `peek`); read messages stay until they expire
//! (`include_read` shows them). One inbox per identity: a message is marked by
//! the first session that reads it, and the identity's other sessions are told
//! in their next read (`read_by_other_sessions`). With a long-poll (`wait_ms`)
//! that waits for the next message. docs/hub.md, "The inbox contract".

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{iso8601, store_error, with_store};
use crate::rpc::tool_error;
use crate::store::{InboxPage, InboxRead, Message};
use crate::{Caller, Shared, now_ms};

/// Longest a `read_inbox` long-poll may wait; larger `wait_ms` values are clamped to it (and the result says so).
pub(crate) const MAX_WAIT_MS: u64 = 30_000;
/// Most messages one `read_inbox` list returns.
pub(crate) const INBOX_PAGE: usize = 100;
/// Most bytes of message JSON one inbox list carries (always at least one
/// message): answers stay far below the bridge's 64 MiB hub-message limit
/// however large the messages waiting are; `pending` says to read again.
pub(crate) const INBOX_PAGE_BYTES: usize = 256 * 1024;
/// Longest message text the `read_inbox` text block repeats; longer ones are
/// cut there (marked `text_truncated`), whole in `structuredContent`. Keeps the
/// second copy of a page small while hosts that show the model only the text
/// block still see every message.
pub(crate) const INBOX_TEXT_EXCERPT_BYTES: usize = 4096;
/// The arguments `read_inbox` accepts (its schema's); anything else (the old `since`, say) is refused naming these.
#[cfg(test)]
pub(crate) const READ_INBOX_ARGUMENTS: [&str; 3] = ["wait_ms", "peek", "include_read"];

/// Added to the refusal of an unknown `read_inbox` argument: a model passing
/// the old cursor learns why none is needed.
pub(crate) const NO_CURSOR_HINT: &str = "There is nothing to acknowledge: read_inbox marks what it returns as read, so just call it again.";
/// The message lists a `read_inbox` answer may carry (each excerpted in the text block).
const LISTS: [&str; 3] = ["messages", "read_by_other_sessions", "read_earlier"];

/// A message as every result shows it: times in ISO 8601, the AIXP envelope as
/// `aixp` (the bridge reads it there), `read_at`/`read_by` once read.
pub(crate) fn message_view(m: &Message) -> Value {
    let mut v = json!({
        "id": m.id,
        "from": m.from,
        "to": m.to,
        "text": m.text,
        "reply_to": m.reply_to,
        "sent_at": iso8601(m.created_at),
        "expires_at": iso8601(m.aixp.expires_at),
        "aixp": m.aixp,
    });
    if let Some(at) = m.read_at {
        v["read_at"] = json!(iso8601(at));
        v["read_by"] = json!(m.read_by);
    }
    v
}

fn views(ms: &[Message]) -> Value {
    Value::Array(ms.iter().map(message_view).collect())
}

/// How a session is named in `read_by`: its connection number and client, as a person recognises it.
pub(crate) fn session_label(shared: &Shared, caller: &Caller) -> String {
    match shared
        .presence
        .agent(caller.connection)
        .and_then(|a| a.client_name)
    {
        Some(client) => format!("connection {} ({client})", caller.connection),
        None => format!("connection {}", caller.connection),
    }
}

fn bool_arg(args: &Value, name: &str) -> Result<bool, Value> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(tool_error(
            format!("`{name}` must be true or false"),
            json!({}),
        )),
    }
}

pub(super) async fn read_inbox(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
    // Unknown arguments (the old `since`) were refused by `tools::call`, with the hint below.
    let (wait_ms, note) = match args.get("wait_ms") {
        None | Some(Value::Null) => (0, None),
        Some(v) => match v.as_u64() {
            Some(n) if n > MAX_WAIT_MS => (
                MAX_WAIT_MS,
                Some(format!(
                    "wait_ms {n} is above the maximum of {MAX_WAIT_MS}: this call waited at most {MAX_WAIT_MS} ms"
                )),
            ),
            Some(n) => (n, None),
            None => {
                return tool_error(
                    format!(
                        "`wait_ms` must be a whole number of milliseconds from 0 to {MAX_WAIT_MS}"
                    ),
                    json!({}),
                );
            }
        },
    };
    let (peek, include_read) = match (bool_arg(args, "peek"), bool_arg(args, "include_read")) {
        (Ok(p), Ok(i)) => (p, i),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let label = Arc::new(session_label(shared, caller));
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    // Subscribed before the first look, so a message stored in between still wakes us.
    let mut signal = shared.presence.inbox_signal(&caller.identity);
    loop {
        signal.borrow_and_update();
        let cursor = shared.presence.looked(caller.connection);
        let me = caller.identity.clone();
        let reader = label.clone();
        let got = with_store(shared, move |s| {
            s.inbox_page(&InboxRead {
                recipient: &me,
                mark_as: (!peek).then_some(reader.as_str()),
                include_read,
                read_elsewhere_after: cursor.map(|c| (c, reader.as_str())),
                now_ms: now_ms(),
                max_messages: INBOX_PAGE,
                max_bytes: INBOX_PAGE_BYTES,
            })
        })
        .await;
        let page = match got {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        };
        let news = !page.messages.is_empty() || !page.read_elsewhere.is_empty();
        if !news && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = signal.changed() => continue,
                _ = tokio::time::sleep_until(deadline) => continue,
                _ = shared.shutdown.cancelled() => {}
            }
        }
        // What this session has now seen or been told about. Reads take the
        // oldest unread first, so every message another session read below the
        // page's last seq was read before this transaction, and is in
        // read_elsewhere unless that list was cut: then only up to its end.
        let told = if page.read_elsewhere_more {
            page.read_elsewhere.last().map(|m| m.seq)
        } else {
            page.messages
                .iter()
                .chain(&page.read_elsewhere)
                .map(|m| m.seq)
                .max()
        };
        if let Some(seq) = told {
            shared.presence.looked_through(caller.connection, seq);
        }
        if !peek && !page.messages.is_empty() {
            // The identity's other sessions (waiting, or subscribed) learn of the read.
            shared.presence.inbox_changed(&caller.identity);
        }
        return inbox_result(answer(&page, peek, include_read, note));
    }
}

/// The structured answer: the lists, the counts, and what to do next.
fn answer(page: &InboxPage, peek: bool, include_read: bool, note: Option<String>) -> Value {
    let mut out = json!({
        "messages": views(&page.messages),
        "pending": page.pending,
        "more": page.pending > 0,
        "marked_read": !peek,
        "read_by_other_sessions": views(&page.read_elsewhere),
        "next": next_step(page, peek),
    });
    if page.read_elsewhere_more {
        out["read_by_other_sessions_more"] = json!(true);
    }
    if include_read {
        out["read_earlier"] = views(&page.read);
    }
    if let Some(note) = note {
        out["note"] = json!(note);
    }
    out
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The `next` sentence: what the model should do with this answer.
fn next_step(page: &InboxPage, peek: bool) -> String {
    let n = page.messages.len();
    let mut s = if n == 0 {
        format!(
            "No unread messages. To wait for one, call read_inbox with wait_ms {MAX_WAIT_MS}: it returns as soon as a message arrives, \
             or empty after {} s; call it again the same way while you wait.",
            MAX_WAIT_MS / 1000
        )
    } else if peek {
        format!(
            "{} still unread (peek: true); call read_inbox without peek to take {}.",
            plural(n, "message is", "messages are"),
            if n == 1 { "it" } else { "them" }
        )
    } else {
        format!(
            "{} now marked read (pass peek: true to look without marking).",
            if n == 1 {
                "This message is".to_owned()
            } else {
                format!("These {n} messages are")
            }
        )
    };
    if page.pending > 0 {
        s.push_str(&format!(
            " {} waiting: call read_inbox again.",
            plural(page.pending as usize, "more is", "more are")
        ));
    }
    if n > 0 {
        s.push_str(" To answer one, call send_message with to = its from and reply_to = its id.");
    }
    let k = page.read_elsewhere.len();
    if k > 0 {
        s.push_str(&format!(
            " {} under read_by_other_sessions {} read by another session of your identity (read_by says which): \
             not new here; answer only if that session did not.",
            plural(k, "message", "messages"),
            if k == 1 { "was" } else { "were" }
        ));
        if page.read_elsewhere_more {
            s.push_str(" More were read there: call read_inbox again to see them.");
        }
    }
    s
}

/// `read_inbox`'s answer: the page in full as `structuredContent`; the text
/// block is the same JSON with each message text cut to
/// [`INBOX_TEXT_EXCERPT_BYTES`], so one answer carries the page about once, not twice.
pub(super) fn inbox_result(structured: Value) -> Value {
    let mut brief = structured.clone();
    let mut cut = false;
    for list in LISTS {
        // get_mut, not brief[list]: indexing would add the lists this answer lacks as nulls.
        let messages = brief.get_mut(list).and_then(Value::as_array_mut);
        for m in messages.into_iter().flatten() {
            if let Some(text) = m["text"].as_str()
                && text.len() > INBOX_TEXT_EXCERPT_BYTES
            {
                let short = format!("{}…", truncate_bytes(text, INBOX_TEXT_EXCERPT_BYTES));
                m["text"] = json!(short);
                m["text_truncated"] = json!(true);
                cut = true;
            }
        }
    }
    if cut {
        let excerpt = format!(
            "message texts longer than {INBOX_TEXT_EXCERPT_BYTES} bytes are cut here; structuredContent has them whole"
        );
        brief["note"] = match brief["note"].as_str() {
            Some(n) => json!(format!("{n}; {excerpt}")),
            None => json!(excerpt),
        };
    }
    json!({
        "content": [{"type": "text", "text": brief.to_string()}],
        "structuredContent": structured,
        "isError": false,
    })
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(super) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::*;

    fn sc(r: &Value) -> &Value {
        &r["structuredContent"]
    }

    fn texts(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn one_inbox_answer_is_bounded_and_says_there_is_more() {
        let shared = hub(StoreLimits {
            max_pending_bytes_per_sender: u64::MAX,
            ..Default::default()
        });
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        let big = "x".repeat(1_000_000);
        for _ in 0..3 {
            let r = tool(
                &shared,
                &alice,
                "send_message",
                json!({"to": "bob", "text": big}),
            )
            .await;
            assert_eq!(r["isError"], false);
        }
        for left in [2, 1, 0] {
            let r = tool(&shared, &bob, "read_inbox", json!({})).await;
            let sc = &r["structuredContent"];
            assert_eq!(sc["messages"].as_array().unwrap().len(), 1);
            assert_eq!(sc["messages"][0]["text"].as_str().unwrap().len(), 1_000_000);
            assert_eq!(
                (sc["more"].as_bool(), sc["pending"].as_u64()),
                (Some(left > 0), Some(left)),
                "{sc:.200}"
            );
            // The text block repeats the page with each text cut to the excerpt, not a second megabyte.
            let text = r["content"][0]["text"].as_str().unwrap();
            assert!(
                text.len() < INBOX_TEXT_EXCERPT_BYTES + 3000,
                "{}",
                text.len()
            );
            let brief: Value = serde_json::from_str(text).unwrap();
            assert_eq!(brief["messages"][0]["text_truncated"], true);
            assert!(r.to_string().len() < 1_000_000 + INBOX_TEXT_EXCERPT_BYTES + 5000);
        }
        // Small messages: one page carries up to INBOX_PAGE_BYTES of them, and the text block equals structuredContent.
        for i in 0..90 {
            tool(
                &shared,
                &alice,
                "send_message",
                json!({"to": "bob", "text": format!("{i}: {}", "y".repeat(3_500))}),
            )
            .await;
        }
        let r = tool(&shared, &bob, "read_inbox", json!({})).await;
        let sc = &r["structuredContent"];
        let n = sc["messages"].as_array().unwrap().len();
        assert!(
            (50..90).contains(&n),
            "{n} messages of ~3.5 KB in a 256 KiB page"
        );
        assert_eq!(sc["pending"].as_u64(), Some(90 - n as u64));
        assert!(sc.to_string().len() <= INBOX_PAGE_BYTES + 2000);
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert!(
            &text == sc,
            "short texts are repeated whole in the text block"
        );
        // include_read is bounded the same way: the most recent read ones, not all four megabytes.
        let r = tool(&shared, &bob, "read_inbox", json!({"include_read": true})).await;
        let earlier = sc_len(&r, "read_earlier");
        assert!((50..=90).contains(&earlier), "{earlier}");
        assert!(
            r.to_string().len() < 3 * INBOX_PAGE_BYTES,
            "{}",
            r.to_string().len()
        );
    }

    fn sc_len(r: &Value, list: &str) -> usize {
        r["structuredContent"][list]
            .as_array()
            .unwrap_or_else(|| panic!("{r:.300}"))
            .len()
    }

    #[tokio::test]
    async fn a_read_marks_what_it_returned_says_what_next_and_shows_no_unix_times() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        for text in ["one", "two"] {
            tool(
                &shared,
                &alice,
                "send_message",
                json!({"to": "bob", "text": text}),
            )
            .await;
        }
        let r = tool(&shared, &bob, "read_inbox", json!({"peek": true})).await;
        assert_eq!(texts(&sc(&r)["messages"]), ["one", "two"], "{r}");
        assert_eq!(sc(&r)["marked_read"], false);
        assert!(sc(&r)["messages"][0].get("read_at").is_none(), "{r}");
        assert!(
            sc(&r)["next"].as_str().unwrap().contains("still unread"),
            "{r}"
        );
        let r = tool(&shared, &bob, "read_inbox", json!({})).await;
        let s = sc(&r);
        assert_eq!(
            texts(&s["messages"]),
            ["one", "two"],
            "a peek marked nothing: {r}"
        );
        assert_eq!(
            (s["marked_read"].as_bool(), s["pending"].as_u64()),
            (Some(true), Some(0))
        );
        let next = s["next"].as_str().unwrap();
        assert!(
            next.contains("These 2 messages are now marked read")
                && next.contains("reply_to = its id"),
            "{next}"
        );
        let m = &s["messages"][0];
        for key in [
            "id",
            "from",
            "to",
            "text",
            "reply_to",
            "sent_at",
            "expires_at",
            "aixp",
            "read_at",
            "read_by",
        ] {
            assert!(m.get(key).is_some(), "{key} missing: {m}");
        }
        assert_eq!(m["read_by"], format!("connection {}", bob.connection));
        for key in ["sent_at", "expires_at", "read_at"] {
            let t = m[key].as_str().unwrap();
            assert!(
                t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
                "{key}: {t}"
            );
        }
        assert!(
            m.get("created_at").is_none() && m.get("seq").is_none(),
            "{m}"
        );
        assert!(m["aixp"]["hops"].is_u64(), "the envelope as before: {m}");
        let r = tool(&shared, &bob, "read_inbox", json!({})).await;
        assert_eq!(sc(&r)["messages"], json!([]), "{r}");
        assert!(
            sc(&r)["next"].as_str().unwrap().contains("wait_ms 30000"),
            "{r}"
        );
        let r = tool(&shared, &bob, "read_inbox", json!({"include_read": true})).await;
        assert_eq!(texts(&sc(&r)["read_earlier"]), ["one", "two"], "{r}");
        assert!(sc(&r)["read_earlier"][1]["read_at"].is_string());
    }

    #[tokio::test]
    async fn unknown_and_malformed_arguments_are_refused_and_a_long_wait_is_clamped_with_a_note() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        tool(
            &shared,
            &alice,
            "send_message",
            json!({"to": "bob", "text": "hi"}),
        )
        .await;
        for args in [json!({"since": 3}), json!({"next_since": 1, "wait_ms": 5})] {
            let r = tool(&shared, &bob, "read_inbox", args).await;
            assert_eq!(r["isError"], true, "{r}");
            let why = sc(&r)["error"].as_str().unwrap();
            assert!(why.contains("include_read, peek, wait_ms"), "{why}");
            assert!(why.contains("nothing to acknowledge"), "{why}");
            assert_eq!(
                sc(&r)["accepted_arguments"],
                json!(["include_read", "peek", "wait_ms"])
            );
        }
        for args in [
            json!({"peek": "yes"}),
            json!({"wait_ms": -1}),
            json!({"include_read": 1}),
        ] {
            let r = tool(&shared, &bob, "read_inbox", args.clone()).await;
            assert_eq!(r["isError"], true, "{args}: {r}");
        }
        // The refused calls took nothing.
        let r = tool(&shared, &bob, "read_inbox", json!({"wait_ms": 60_000})).await;
        assert_eq!(texts(&sc(&r)["messages"]), ["hi"], "{r}");
        let note = sc(&r)["note"].as_str().unwrap();
        assert!(note.contains("60000") && note.contains("30000"), "{note}");
        let r = tool(&shared, &bob, "read_inbox", json!({"wait_ms": 0})).await;
        assert!(sc(&r).get("note").is_none(), "{r}");
        // Every accepted argument is in the schema, described; `since` is not.
        let tools = crate::tools::list();
        let schema = &tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "read_inbox")
            .unwrap()["inputSchema"];
        let props = schema["properties"].as_object().unwrap();
        let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut accepted = READ_INBOX_ARGUMENTS.to_vec();
        accepted.sort_unstable();
        assert_eq!(names, accepted);
        assert!(
            props.values().all(|p| p["description"].is_string()),
            "{schema}"
        );
    }

    #[tokio::test]
    async fn another_session_of_the_identity_is_told_what_the_first_read() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let laptop = connect(&shared, "bob", Scopes::all());
        let send = async |text: &str| {
            tool(
                &shared,
                &alice,
                "send_message",
                json!({"to": "bob", "text": text}),
            )
            .await
        };
        send("before the phone joined").await;
        tool(&shared, &laptop, "read_inbox", json!({})).await;
        let phone = connect(&shared, "bob", Scopes::all());
        send("one").await;
        send("two").await;
        let r = tool(&shared, &laptop, "read_inbox", json!({})).await;
        assert_eq!(texts(&sc(&r)["messages"]), ["one", "two"]);
        assert_eq!(
            sc(&r)["read_by_other_sessions"],
            json!([]),
            "its own reads are not news: {r}"
        );
        // The phone gets nothing as new, and is told what the laptop read since it joined, not before.
        let r = tool(&shared, &phone, "read_inbox", json!({})).await;
        assert_eq!(sc(&r)["messages"], json!([]), "{r}");
        let told = &sc(&r)["read_by_other_sessions"];
        assert_eq!(texts(told), ["one", "two"], "{r}");
        assert_eq!(
            told[0]["read_by"],
            format!("connection {}", laptop.connection)
        );
        assert!(
            sc(&r)["next"].as_str().unwrap().contains("another session"),
            "{r}"
        );
        // Told once.
        let r = tool(&shared, &phone, "read_inbox", json!({})).await;
        assert_eq!(sc(&r)["read_by_other_sessions"], json!([]), "{r}");
        send("three").await;
        let r = tool(&shared, &phone, "read_inbox", json!({})).await;
        assert_eq!(texts(&sc(&r)["messages"]), ["three"]);
        let r = tool(&shared, &laptop, "read_inbox", json!({})).await;
        assert_eq!(texts(&sc(&r)["read_by_other_sessions"]), ["three"], "{r}");
        // A session that left has no cursor left behind.
        shared.presence.leave(phone.connection);
        assert_eq!(shared.presence.looked(phone.connection), None);
    }
}
