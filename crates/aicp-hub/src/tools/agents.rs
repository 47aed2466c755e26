//! Who is there: `whoami` and `list_agents`. Presence tells the truth: every
//! identity the hub knows is listed, online (with its live sessions) or
//! offline (with when it was last seen and what it last declared), and offline
//! people still receive messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{duration_words, iso8601, store_error, with_store};
use crate::presence::Agent;
use crate::rpc::tool_result;
use crate::store::AgentRecord;
use crate::{Caller, Shared, now_ms};

/// Most offline identities `list_agents` lists (the most recently seen);
/// `offline` still counts them all. Under `--open` every connection is a new
/// identity, so the agents table grows without this bound on the answer.
pub(crate) const MAX_OFFLINE_LISTED: usize = 200;

pub(super) fn whoami(shared: &Arc<Shared>, caller: &Caller) -> Value {
    let capabilities = shared
        .presence
        .capabilities_of_connection(caller.connection)
        .unwrap_or_default();
    tool_result(
        json!({
            "identity": caller.identity,
            "connection": caller.connection,
            "sessions": shared.presence.sessions_of(&caller.identity),
            "scopes": caller.scopes.to_claim(),
            "capabilities": capabilities,
        }),
        false,
    )
}

/// What `send_message` adds when the recipient is offline.
pub(crate) fn offline_note(shared: &Shared, identity: &str) -> String {
    format!(
        "{identity} is offline; the message waits in {identity}'s inbox (kept {})",
        duration_words(shared.settings.message_ttl_ms)
    )
}

pub(super) async fn list_agents(shared: &Arc<Shared>) -> Value {
    let known = match with_store(shared, |s| s.agents_seen()).await {
        Ok(k) => k,
        Err(e) => return store_error(&e),
    };
    tool_result(agents_view(known, shared.presence.list(), now_ms()), false)
}

/// One entry per identity, from the store's records and the live sessions.
/// Online people's `last_seen` is `now`: they are there.
fn agents_view(known: Vec<AgentRecord>, live: Vec<Agent>, now: u64) -> Value {
    let mut by_id: BTreeMap<String, (Option<AgentRecord>, Vec<Agent>)> = BTreeMap::new();
    for r in known {
        let id = r.identity.clone();
        by_id.entry(id).or_default().0 = Some(r);
    }
    for a in live {
        by_id.entry(a.identity.clone()).or_default().1.push(a);
    }
    let mut online = Vec::new();
    let mut offline = Vec::new();
    for (identity, (record, sessions)) in by_id {
        if sessions.is_empty() {
            let r = record.expect("an identity with no session came from the store");
            offline.push((r.last_seen, identity, r.capabilities));
            continue;
        }
        let mut capabilities: Vec<String> = Vec::new();
        for c in sessions.iter().flat_map(|a| &a.capabilities) {
            if !capabilities.contains(c) {
                capabilities.push(c.clone());
            }
        }
        let sessions: Vec<Value> = sessions
            .iter()
            .map(|a| {
                json!({
                    "connection": a.connection,
                    "client": {"name": a.client_name, "version": a.client_version},
                    "connected_at": iso8601(a.connected_at),
                })
            })
            .collect();
        online.push(json!({
            "identity": identity,
            "status": "online",
            "sessions": sessions,
            "capabilities": capabilities,
            "last_seen": iso8601(now),
        }));
    }
    let (n_online, n_offline) = (online.len(), offline.len());
    // The most recently seen offline people, then all back in name order.
    offline.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut agents = online;
    agents.extend(offline.into_iter().take(MAX_OFFLINE_LISTED).map(
        |(last_seen, identity, capabilities)| {
            json!({
                "identity": identity,
                "status": "offline",
                "sessions": [],
                "capabilities": capabilities,
                "last_seen": iso8601(last_seen),
            })
        },
    ));
    agents.sort_by(|a, b| a["identity"].as_str().cmp(&b["identity"].as_str()));
    let mut out = json!({
        "count": n_online + n_offline,
        "online": n_online,
        "offline": n_offline,
        "agents": agents,
        "note": "Offline people still receive messages: send_message stores them in their inbox until they read it or it expires.",
    });
    if n_offline > MAX_OFFLINE_LISTED {
        out["offline_not_listed"] = json!(n_offline - MAX_OFFLINE_LISTED);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::testing::*;

    fn agent(connection: u64, identity: &str, caps: &[&str]) -> Agent {
        Agent {
            connection,
            identity: identity.into(),
            client_name: Some("Claude Desktop".into()),
            client_version: Some("1".into()),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            connected_at: 1_000,
        }
    }

    fn record(identity: &str, caps: &[&str], last_seen: u64) -> AgentRecord {
        AgentRecord {
            identity: identity.into(),
            client_name: None,
            client_version: None,
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            last_seen,
        }
    }

    #[test]
    fn every_known_identity_is_listed_once_online_or_offline() {
        let v = agents_view(
            vec![
                record("bob", &["rust"], 5_000),
                record("carol", &["old"], 6_000),
            ],
            vec![
                agent(3, "carol", &["analysis"]),
                agent(4, "carol", &["writing", "analysis"]),
                agent(7, "dave", &[]),
            ],
            9_000,
        );
        assert_eq!(
            (
                v["count"].as_u64(),
                v["online"].as_u64(),
                v["offline"].as_u64()
            ),
            (Some(3), Some(2), Some(1))
        );
        let a = v["agents"].as_array().unwrap();
        assert_eq!(
            a.iter()
                .map(|a| a["identity"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["bob", "carol", "dave"]
        );
        assert_eq!(a[0]["status"], "offline");
        assert_eq!(a[0]["sessions"], json!([]));
        assert_eq!(a[0]["capabilities"], json!(["rust"]), "the last declared");
        assert_eq!(a[0]["last_seen"], iso8601(5_000));
        assert_eq!(a[1]["status"], "online");
        assert_eq!(a[1]["sessions"].as_array().unwrap().len(), 2);
        assert_eq!(a[1]["sessions"][0]["client"]["name"], "Claude Desktop");
        assert_eq!(
            a[1]["capabilities"],
            json!(["analysis", "writing"]),
            "its sessions' declarations, not the stored ones"
        );
        assert_eq!(a[1]["last_seen"], iso8601(9_000));
        assert!(
            v["note"]
                .as_str()
                .unwrap()
                .contains("Offline people still receive messages")
        );
    }

    #[test]
    fn the_offline_list_is_bounded_to_the_most_recently_seen() {
        let known = (0..MAX_OFFLINE_LISTED as u64 + 5)
            .map(|i| record(&format!("raw-{i}"), &[], i))
            .collect();
        let v = agents_view(known, Vec::new(), 0);
        assert_eq!(v["offline"].as_u64(), Some(MAX_OFFLINE_LISTED as u64 + 5));
        assert_eq!(v["offline_not_listed"].as_u64(), Some(5));
        let listed = v["agents"].as_array().unwrap();
        assert_eq!(listed.len(), MAX_OFFLINE_LISTED);
        assert!(
            listed.iter().all(|a| a["identity"] != "raw-0"),
            "the oldest are left out"
        );
    }

    #[tokio::test]
    async fn whoami_counts_the_identitys_sessions_and_send_says_when_the_recipient_is_offline() {
        let shared = hub(StoreLimits::default());
        let alice = connect(&shared, "alice", Scopes::all());
        connect(&shared, "alice", Scopes::all());
        let bob = connect(&shared, "bob", Scopes::all());
        let r = tool(&shared, &alice, "whoami", json!({})).await;
        assert_eq!(r["structuredContent"]["sessions"], 2, "{r}");
        let r = tool(
            &shared,
            &alice,
            "send_message",
            json!({"to": "bob", "text": "hi"}),
        )
        .await;
        assert_eq!(r["structuredContent"]["recipient_online"], true, "{r}");
        assert!(r["structuredContent"].get("note").is_none(), "{r}");
        shared.presence.leave(bob.connection);
        let r = tool(
            &shared,
            &alice,
            "send_message",
            json!({"to": "bob", "text": "hi"}),
        )
        .await;
        let sc = &r["structuredContent"];
        assert_eq!(sc["recipient_online"], false, "{r}");
        assert_eq!(
            sc["note"],
            "bob is offline; the message waits in bob's inbox (kept 7 days)"
        );
        let r = tool(&shared, &alice, "list_agents", json!({})).await;
        let sc = &r["structuredContent"];
        assert_eq!(
            (sc["online"].as_u64(), sc["offline"].as_u64()),
            (Some(1), Some(1)),
            "{r}"
        );
    }
}
