//! A one-shot MCP client for the command line (`status`, `login`, `share`,
//! `tools`, `call`): open the WebSocket the way `serve` does, initialize, send
//! requests one at a time, close with 1000. The relay never uses this: it
//! streams; this waits for one answer at a time.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use aicp_proto::aixp::AixpStatus;
use aicp_proto::meta::AGENT_META_KEY;

use crate::config::HubConfig;
use crate::relay::upstream::{self, HubError, Ws};
use aicp_proto::wire::{self, Id, Kind};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error("the hub answered {method} with error {code}: {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
    },
    #[error("no answer to {method} within {after:?}")]
    Timeout { method: String, after: Duration },
}

impl ClientError {
    /// The AIXP status code for `status` and exit codes.
    pub fn aixp_status(&self) -> AixpStatus {
        match self {
            ClientError::Hub(e) => e.aixp_status(),
            ClientError::Rpc { .. } => AixpStatus::DATA_FORMAT,
            ClientError::Timeout { .. } => AixpStatus::COMMUNICATION,
        }
    }
}

pub struct HubClient {
    ws: Ws,
    next_id: u64,
    /// Longest wait for one answer.
    patience: Duration,
    limit: usize,
    /// The hub's `initialize` result.
    pub server: Value,
    /// Time from sending `initialize` to its answer.
    pub rtt: Duration,
}

impl HubClient {
    /// Connects and initializes, as client `aicp-bridge-cli`.
    pub async fn connect(cfg: &HubConfig, patience: Duration) -> Result<HubClient, ClientError> {
        let mut offer = true;
        let ws = timeout(cfg.connect_timeout, upstream::upgrade(cfg, &mut offer))
            .await
            .map_err(|_| HubError::ConnectTimeout(cfg.connect_timeout))??;
        let mut client = HubClient {
            ws,
            next_id: 0,
            patience,
            limit: cfg.max_message_bytes,
            server: Value::Null,
            rtt: Duration::ZERO,
        };
        let mut params = json!({
            "protocolVersion": rmcp::model::ProtocolVersion::LATEST_WITH_INITIALIZE,
            "capabilities": {},
            "clientInfo": { "name": "aicp-bridge-cli", "version": env!("CARGO_PKG_VERSION") },
        });
        // The profile's capabilities, as `serve` declares them; with none
        // configured nothing is declared, and the hub keeps what it knew.
        if !cfg.capabilities.is_empty() {
            params["_meta"] = json!({ AGENT_META_KEY: { "capabilities": cfg.capabilities } });
        }
        let started = Instant::now();
        client.server = client.request("initialize", params).await?;
        client.rtt = started.elapsed();
        client
            .send(wire::notification("notifications/initialized", None))
            .await?;
        Ok(client)
    }

    async fn send(&mut self, text: String) -> Result<(), ClientError> {
        let limit = self.limit;
        self.ws
            .send(WsMessage::text(text))
            .await
            .map_err(|e| ClientError::Hub(HubError::from_ws(e, limit)))
    }

    /// Sends a request and waits for its result. Notifications that arrive
    /// meanwhile are skipped; requests from the hub are declined.
    pub async fn request(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = Id::bridge(self.next_id);
        self.send(wire::request(&id, method, &params.to_string()))
            .await?;
        let patience = self.patience;
        timeout(patience, self.answer(&id, method))
            .await
            .map_err(|_| ClientError::Timeout {
                method: method.to_owned(),
                after: patience,
            })?
    }

    async fn answer(&mut self, id: &Id, method: &str) -> Result<Value, ClientError> {
        loop {
            let text = match self.ws.next().await {
                None => return Err(HubError::Closed("before answering".into()).into()),
                Some(Err(e)) => return Err(HubError::from_ws(e, self.limit).into()),
                Some(Ok(WsMessage::Text(t))) => t.as_str().to_owned(),
                Some(Ok(WsMessage::Close(_))) => {
                    return Err(HubError::Closed("before answering".into()).into());
                }
                Some(Ok(_)) => continue,
            };
            let Ok(msg) = wire::parse(&text, false) else {
                continue;
            };
            match msg.kind {
                Kind::Response { id: got, is_error } if &got == id => {
                    if is_error {
                        let error: Value = msg
                            .error
                            .and_then(|e| serde_json::from_str(e.get()).ok())
                            .unwrap_or_default();
                        return Err(ClientError::Rpc {
                            method: method.to_owned(),
                            code: error["code"].as_i64().unwrap_or(0),
                            message: error["message"]
                                .as_str()
                                .unwrap_or("(no message)")
                                .to_owned(),
                        });
                    }
                    return Ok(msg
                        .result
                        .and_then(|r| serde_json::from_str(r.get()).ok())
                        .unwrap_or(Value::Null));
                }
                Kind::Request { id: hub_id, .. } => {
                    let no = wire::error_response(
                        Some(&hub_id),
                        aicp_proto::codes::METHOD_NOT_FOUND,
                        "aicp-bridge's command line does not answer hub requests",
                        None,
                    );
                    self.send(no).await?;
                }
                _ => {}
            }
        }
    }

    /// Every tool, following `nextCursor` pages.
    pub async fn list_tools(&mut self) -> Result<Vec<Value>, ClientError> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let page = self.request("tools/list", params).await?;
            tools.extend(page["tools"].as_array().cloned().unwrap_or_default());
            match page["nextCursor"].as_str() {
                Some(next) if !next.is_empty() && cursor.as_deref() != Some(next) => {
                    cursor = Some(next.to_owned())
                }
                _ => return Ok(tools),
            }
        }
    }

    pub async fn call_tool(&mut self, name: &str, arguments: Value) -> Result<Value, ClientError> {
        self.request(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await
    }

    /// Closes with code 1000 and waits briefly for the hub's reply.
    pub async fn close(mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "done".into(),
        };
        let _ = timeout(Duration::from_millis(500), async {
            let _ = self.ws.send(WsMessage::Close(Some(frame))).await;
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
