//! Who a message may be addressed to: every identity the hub knows, and the
//! one known identity a name a model typed resolves to (trimmed, case-folded
//! when unambiguous, invisible characters refused).

use std::sync::Arc;

use serde_json::{Value, json};

use super::with_store;
use crate::Shared;
use crate::routing::Candidate;
use crate::rpc::tool_error;
use crate::store::StoreError;

/// Most known identities an "unknown recipient" error lists (the rest are counted).
pub(crate) const MAX_NAMES_LISTED: usize = 50;

/// Unicode general category Cf (format characters: zero-width spaces and
/// joiners, bidi controls, the BOM, tags), listed by hand because std has no
/// category lookup. They render as nothing, so a name holding one looks like
/// another identity and reaches nobody.
pub(super) fn is_format_char(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
        | 0x180E | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// Every identity a message may be addressed to: connected now, or seen
/// before (the store's agents, kept across restarts). Sorted, no repeats.
pub(super) async fn known_identities(shared: &Arc<Shared>) -> Result<Vec<String>, StoreError> {
    let seen = with_store(shared, |s| s.agents_seen()).await?;
    let mut known: Vec<String> = seen.into_iter().map(|a| a.identity).collect();
    known.extend(shared.presence.list().into_iter().map(|a| a.identity));
    known.sort();
    known.dedup();
    Ok(known)
}

/// Everyone work may go to, except `except`: the connected identities with
/// what they declared now, then every identity seen before and offline now,
/// with what it declared when last connected (its inbox keeps what is sent).
pub(super) async fn people(
    shared: &Arc<Shared>,
    except: &str,
) -> Result<Vec<Candidate>, StoreError> {
    let seen = with_store(shared, |s| s.agents_seen()).await?;
    let mut out = shared.presence.candidates(except);
    for a in seen {
        if a.identity != except && !out.iter().any(|c| c.identity == a.identity) {
            out.push(Candidate {
                identity: a.identity,
                capabilities: a.capabilities,
                online: false,
            });
        }
    }
    Ok(out)
}

/// How a candidate shows in a result: name, what it declared, online or offline.
pub(super) fn describe(people: &[Candidate]) -> Vec<Value> {
    people
        .iter()
        .take(MAX_NAMES_LISTED)
        .map(|c| {
            json!({
                "identity": c.identity,
                "capabilities": c.capabilities,
                "presence": presence_word(c.online),
            })
        })
        .collect()
}

/// `online` or `offline`, as every result says it.
pub(super) fn presence_word(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

/// The known identity `raw` names, or why it names none. Surrounding
/// whitespace is trimmed; whitespace, control or format characters inside
/// are refused. Identities are case-sensitive (a token's `sub` as issued), but
/// an address matches case-insensitively when exactly one known identity does,
/// so `Bob` reaches `bob`; an exact match always wins.
pub(crate) fn resolve_recipient(raw: &str, known: &[String]) -> Result<String, String> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("the recipient name is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || is_format_char(c))
    {
        return Err(format!(
            "the recipient name {raw:?} contains U+{:04X} (whitespace, control or invisible format character); identities never do",
            c as u32
        ));
    }
    if known.iter().any(|k| k == name) {
        return Ok(name.to_owned());
    }
    let lower = name.to_lowercase();
    let folded: Vec<&String> = known.iter().filter(|k| k.to_lowercase() == lower).collect();
    match folded.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "no agent called {name:?} has ever connected to this hub, so nobody would read the message; known agents: {}",
            list_names(known)
        )),
        several => Err(format!(
            "{name:?} matches several agents when case is ignored ({}); use the exact name",
            several
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `a, b, c` with at most [`MAX_NAMES_LISTED`] names, then how many more.
pub(super) fn list_names(names: &[String]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut out = names
        .iter()
        .take(MAX_NAMES_LISTED)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_NAMES_LISTED {
        out.push_str(&format!(" and {} more", names.len() - MAX_NAMES_LISTED));
    }
    out
}

/// The tool error for a name that reaches nobody; carries the known names.
pub(super) fn unknown_recipient(reason: String, known: &[String]) -> Value {
    let listed: Vec<&String> = known.iter().take(MAX_NAMES_LISTED).collect();
    tool_error(reason, json!({"known_agents": listed}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipient_names_are_trimmed_folded_and_must_be_known() {
        let known: Vec<String> = ["alice", "bob", "Dave", "dave"].map(String::from).to_vec();
        assert_eq!(resolve_recipient("bob", &known).unwrap(), "bob");
        assert_eq!(resolve_recipient(" bob \n", &known).unwrap(), "bob");
        assert_eq!(resolve_recipient("Bob", &known).unwrap(), "bob");
        assert_eq!(
            resolve_recipient("dave", &known).unwrap(),
            "dave",
            "exact wins"
        );
        let e = resolve_recipient("DAVE", &known).unwrap_err();
        assert!(e.contains("several") && e.contains("Dave, dave"), "{e}");
        for bad in [
            "b\u{200b}ob",
            "b\u{2060}ob",
            "\u{feff}bob",
            "b\u{200d}ob",
            "b ob",
            "b\tob",
            "b\u{7}ob",
        ] {
            let e = resolve_recipient(bad, &known).unwrap_err();
            assert!(e.contains("U+"), "{bad:?}: {e}");
        }
        let e = resolve_recipient("nobody-ever", &known).unwrap_err();
        assert!(e.contains("alice, bob, Dave, dave"), "{e}");
        assert!(resolve_recipient("   ", &known).is_err());
        let many: Vec<String> = (0..MAX_NAMES_LISTED + 7)
            .map(|i| format!("a{i:03}"))
            .collect();
        let e = resolve_recipient("zed", &many).unwrap_err();
        assert!(e.ends_with("and 7 more"), "{e}");
    }
}
