//! Receiving: `read_inbox`, pages of bounded size, with a long-poll that
//! waits for the next message.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::{store_error, with_store};
use crate::rpc::tool_error;
use crate::{Caller, Shared, now_ms};

/// Longest a `read_inbox` long-poll may wait; larger `wait_ms` values are clamped to it.
pub(crate) const MAX_WAIT_MS: u64 = 30_000;
/// Most messages one `read_inbox` returns.
pub(crate) const INBOX_PAGE: usize = 100;
/// Most bytes of message JSON one inbox page carries (always at least one
/// message): answers stay far below the bridge's 64 MiB hub-message limit
/// however large the messages waiting are; `more`/`pending` say to read again.
pub(crate) const INBOX_PAGE_BYTES: usize = 256 * 1024;
/// Longest message text the `read_inbox` text block repeats; longer ones are
/// cut there (marked `text_truncated`), whole in `structuredContent`. Keeps the
/// second copy of a page small while hosts that show the model only the text
/// block still see every message.
pub(crate) const INBOX_TEXT_EXCERPT_BYTES: usize = 4096;

pub(super) async fn read_inbox(shared: &Arc<Shared>, caller: &Caller, args: &Value) -> Value {
    let wait_ms = match args.get("wait_ms") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) => n.min(MAX_WAIT_MS),
            None => return tool_error("`wait_ms` must be a non-negative integer", json!({})),
        },
    };
    let since = match args.get("since") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_u64() {
            Some(n) => n,
            None => return tool_error("`since` must be a non-negative integer", json!({})),
        },
    };
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    // Subscribed before the first look, so a message stored in between still wakes us.
    let mut signal = shared.presence.inbox_signal(&caller.identity);
    loop {
        signal.borrow_and_update();
        let me = caller.identity.clone();
        let got = with_store(shared, move |s| {
            s.inbox_page(&me, since, now_ms(), INBOX_PAGE, INBOX_PAGE_BYTES)
        })
        .await;
        let page = match got {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        };
        let messages = page.messages;
        let done = !messages.is_empty() || tokio::time::Instant::now() >= deadline;
        if !done {
            tokio::select! {
                _ = signal.changed() => continue,
                _ = tokio::time::sleep_until(deadline) => continue,
                _ = shared.shutdown.cancelled() => {}
            }
        }
        // Never beyond what this inbox has handed out: echoing a `since` from
        // the future would make the next call acknowledge messages unread.
        let next_since = messages.last().map_or(page.acked_through, |m| m.seq);
        return inbox_result(json!({
            "messages": messages,
            "next_since": next_since,
            "more": page.pending > 0,
            "pending": page.pending,
        }));
    }
}

/// `read_inbox`'s answer: the page in full as `structuredContent`; the text
/// block is the same JSON with each message text cut to
/// [`INBOX_TEXT_EXCERPT_BYTES`], so one answer carries the page about once, not twice.
pub(super) fn inbox_result(structured: Value) -> Value {
    let mut brief = structured.clone();
    let mut cut = false;
    for m in brief["messages"].as_array_mut().into_iter().flatten() {
        if let Some(text) = m["text"].as_str()
            && text.len() > INBOX_TEXT_EXCERPT_BYTES
        {
            let short = format!("{}…", truncate_bytes(text, INBOX_TEXT_EXCERPT_BYTES));
            m["text"] = json!(short);
            m["text_truncated"] = json!(true);
            cut = true;
        }
    }
    if cut {
        brief["note"] = json!(format!(
            "message texts longer than {INBOX_TEXT_EXCERPT_BYTES} bytes are cut here; structuredContent has them whole"
        ));
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
        let mut since = json!(0);
        for left in [2, 1, 0] {
            let r = tool(&shared, &bob, "read_inbox", json!({"since": since})).await;
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
                text.len() < INBOX_TEXT_EXCERPT_BYTES + 2000,
                "{}",
                text.len()
            );
            let brief: Value = serde_json::from_str(text).unwrap();
            assert_eq!(brief["messages"][0]["text_truncated"], true);
            assert!(r.to_string().len() < 1_000_000 + INBOX_TEXT_EXCERPT_BYTES + 4000);
            since = sc["next_since"].clone();
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
        let r = tool(&shared, &bob, "read_inbox", json!({"since": since})).await;
        let sc = &r["structuredContent"];
        let n = sc["messages"].as_array().unwrap().len();
        assert!(
            (50..90).contains(&n),
            "{n} messages of ~3.5 KB in a 256 KiB page"
        );
        assert_eq!(sc["pending"].as_u64(), Some(90 - n as u64));
        assert!(sc.to_string().len() <= INBOX_PAGE_BYTES + 1000);
        let text: Value = serde_json::from_str(r["content"][0]["text"].as_str().unwrap()).unwrap();
        assert!(
            &text == sc,
            "short texts are repeated whole in the text block"
        );
    }

    #[tokio::test]
    async fn next_since_never_runs_ahead_of_what_was_returned() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        let send = |text: &'static str| json!({"to": "bob", "text": text});
        tool(&shared, &alice, "send_message", send("one")).await;
        // A `since` far ahead of anything bob was handed: nothing is deleted and it is not echoed.
        let r = tool(&shared, &bob, "read_inbox", json!({"since": 1_000_000})).await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["messages"][0]["text"], "one", "{r}");
        let first = sc["messages"][0]["seq"].as_u64().unwrap();
        assert_eq!(sc["next_since"], first);
        // Following a bogus cursor again does not delete a message stored meanwhile.
        tool(&shared, &alice, "send_message", send("two")).await;
        let r = tool(&shared, &bob, "read_inbox", json!({"since": u64::MAX})).await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["messages"][0]["text"], "two", "{r}");
        let r = tool(&shared, &bob, "read_inbox", json!({"since": u64::MAX})).await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["messages"], json!([]), "{r}");
        assert!(sc["next_since"].as_u64().unwrap() <= first + 1, "{r}");
        let tools = crate::tools::list();
        let schema = &tools["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "read_inbox")
            .unwrap()["inputSchema"]["properties"]["since"];
        assert!(schema["description"].is_string(), "{schema}");
    }
}
