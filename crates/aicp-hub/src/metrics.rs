//! `/metrics` in the Prometheus text format: connections, calls by method,
//! tool and outcome, call latency, messages delivered and the store's size.
//! Metric names are listed in docs/hub.md.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallLabels {
    /// The JSON-RPC method (`tools/call`, `resources/read`, …).
    pub method: String,
    /// The tool name for `tools/call`, else empty.
    pub tool: String,
    /// `ok`, `tool_error`, `error` (a JSON-RPC error) or `rate_limited`.
    pub outcome: &'static str,
}

/// Methods counted under their own name in `aicp_hub_calls_total`.
const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "logging/setLevel",
];

pub(crate) struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub refused_upgrades: Family<RefusedLabels, Counter>,
    pub calls: Family<CallLabels, Counter>,
    pub call_seconds: Histogram,
    pub messages_delivered: Counter,
    pub store_bytes: Gauge,
    /// Frames over a connection's rate limit that got no answer (malformed input, notifications).
    pub frames_dropped: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusedLabels {
    /// `unauthorized` or `too_many_connections`.
    pub reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("aicp_hub");
        let connections = Gauge::default();
        let connections_total = Counter::default();
        let refused_upgrades = Family::<RefusedLabels, Counter>::default();
        let calls = Family::<CallLabels, Counter>::default();
        // 25 µs .. ~1.6 s: a cheap call takes tens of microseconds, a long-poll seconds.
        let call_seconds = Histogram::new(exponential_buckets(25e-6, 2.0, 17));
        let messages_delivered = Counter::default();
        let store_bytes = Gauge::default();
        let frames_dropped = Counter::default();
        registry.register(
            "connections",
            "Open MCP WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "connections_opened",
            "MCP WebSocket connections accepted",
            connections_total.clone(),
        );
        registry.register(
            "upgrades_refused",
            "WebSocket upgrades refused, by reason",
            refused_upgrades.clone(),
        );
        registry.register(
            "calls",
            "JSON-RPC requests answered, by method, tool and outcome",
            calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Time from a request's arrival to its answer",
            call_seconds.clone(),
        );
        registry.register(
            "messages_delivered",
            "Messages stored for a recipient",
            messages_delivered.clone(),
        );
        registry.register(
            "store_bytes",
            "Size of the store on disk",
            store_bytes.clone(),
        );
        registry.register(
            "frames_dropped",
            "Frames over a connection's rate limit dropped without an answer",
            frames_dropped.clone(),
        );
        Metrics {
            registry,
            connections,
            connections_total,
            refused_upgrades,
            calls,
            call_seconds,
            messages_delivered,
            store_bytes,
            frames_dropped,
        }
    }

    /// Counts one answered request. Labels come from a fixed set: a method or
    /// tool name the hub does not know is counted as `other`, so a client
    /// inventing names cannot grow the number of series without bound.
    pub(crate) fn call(&self, method: &str, tool: &str, outcome: &'static str, seconds: f64) {
        let method = KNOWN_METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        let tool = if tool.is_empty() || super::tools::scope_of(tool).is_some() {
            tool
        } else {
            "other"
        };
        self.calls
            .get_or_create(&CallLabels {
                method: method.to_owned(),
                tool: tool.to_owned(),
                outcome,
            })
            .inc();
        self.call_seconds.observe(seconds);
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused_upgrades
            .get_or_create(&RefusedLabels { reason })
            .inc();
    }

    /// The text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_names() {
        let m = Metrics::new();
        m.connections.inc();
        m.call("tools/call", "list_agents", "ok", 0.0001);
        m.refused("unauthorized");
        m.call("made/up", "", "error", 0.0001);
        m.call("tools/call", "invented_tool", "error", 0.0001);
        let text = m.render();
        assert!(
            !text.contains("made/up") && !text.contains("invented_tool"),
            "{text}"
        );
        assert!(text.contains("method=\"other\""), "{text}");
        assert!(text.contains("tool=\"other\""), "{text}");
        for name in [
            "aicp_hub_connections 1",
            "aicp_hub_calls_total{method=\"tools/call\",tool=\"list_agents\",outcome=\"ok\"} 1",
            "aicp_hub_call_duration_seconds_bucket",
            "aicp_hub_upgrades_refused_total{reason=\"unauthorized\"} 1",
            "aicp_hub_store_bytes",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
