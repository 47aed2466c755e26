//! Validated settings, resolved once from the command line, the environment
//! and the config file (flag > environment > file > default); the rest of the
//! program reads only these. Every limit is a named constant with the reason
//! for its value.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use url::Url;

use crate::cli::{HubTarget, ServeArgs};
use crate::config_file::{ConfigFile, DEFAULT_PROFILE, Profile};
use crate::credentials::{self, Credential};
use crate::guard::Limits;

/// Largest host message relayed. Real hubs close the socket (1009) on a message
/// over 1 MiB without replying, so the bridge refuses such a request itself and
/// says why, instead of losing the connection and every call in flight with it.
pub const DEFAULT_MAX_HOST_MESSAGE: usize = 1024 * 1024;

/// Largest hub message accepted. Tool results can be large (files, images), so
/// this is generous; it only bounds memory against a broken hub.
pub const DEFAULT_MAX_HUB_MESSAGE: usize = 64 * 1024 * 1024;

/// One connection attempt: TCP, TLS, upgrade and the re-initialize handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Real hubs ping every 20 s and drop silent clients; pinging at the same pace
/// finds a dead hub (no frame for two intervals) within 40 s.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);

/// Reconnect backoff starts here and doubles on each failure.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);

/// Reconnect backoff never waits longer than this between attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How the bridge reaches its hub; shared by the hub task and the relay.
#[derive(Debug)]
pub struct HubConfig {
    pub url: Url,
    /// `--allow-insecure`: plain ws:// may go to any address. Without it, a ws:// host
    /// given by name must resolve to loopback addresses only (checked at each connect).
    pub allow_insecure: bool,
    pub credential: Option<Credential>,
    /// Present exactly when the URL is wss://.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub max_backoff: Duration,
    /// The profile's declared capabilities. One-shot commands (`share`,
    /// `call`, `status`, `tools`) declare them too, so connecting for a
    /// moment never tells the hub this user has none.
    pub capabilities: Vec<String>,
}

#[derive(Debug)]
pub struct ServeConfig {
    pub hub: Arc<HubConfig>,
    pub max_host_message: usize,
    pub request_timeout: Option<Duration>,
    pub strict: bool,
    /// What this user's assistant is good at, declared to the hub at initialize.
    pub capabilities: Vec<String>,
    /// Copy the token into `initialize` `_meta["aicp/auth"]`: only for hubs that need it,
    /// since every copy of a secret is one more place it can leak from.
    pub token_in_initialize: bool,
    /// The loop guard's limits (docs/limits.md).
    pub limits: Limits,
    /// This bridge instance in AIXP envelopes: random per run, so two bridges of one user differ.
    pub origin: String,
    /// The profile in use, for the state file `status` reads.
    pub profile: String,
}

impl ServeConfig {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<ServeConfig> {
        let resolved = Resolved::load(&args.target)?;
        let url = resolved.hub_url()?;
        let lookup = resolved.lookup_token(&url)?;
        if let Some(Err(why)) = &lookup.keyring {
            // Not fatal: an open hub needs no token. `status` reports the same.
            tracing::debug!(reason = %why, "no OS keyring");
        }
        let limits = resolved.limits(&args.limit)?;
        if args.max_message_bytes < 1024 {
            bail!("--max-message-bytes must be at least 1024");
        }
        let tuning = Tuning {
            max_message_bytes: args.max_hub_message_bytes,
            connect_timeout: seconds("--connect-timeout", args.connect_timeout)?,
            keepalive: seconds("--keepalive", args.keepalive)?,
            max_backoff: seconds("--max-backoff", args.max_backoff)?,
        };
        let mut capabilities: Vec<String> = args
            .capabilities
            .iter()
            .flat_map(|c| c.split(','))
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect();
        if capabilities.is_empty() {
            capabilities = resolved.profile.capabilities.clone();
        }
        Ok(ServeConfig {
            hub: Arc::new(resolved.hub_config(url, lookup.credential, tuning)?),
            max_host_message: args.max_message_bytes,
            request_timeout: args
                .request_timeout
                .map(|s| seconds("--request-timeout", s))
                .transpose()?,
            strict: args.strict,
            capabilities,
            token_in_initialize: args.token_in_initialize || resolved.profile.token_in_initialize,
            limits,
            origin: format!("aicp-bridge-{:08x}", fastrand::u32(..)),
            profile: resolved.profile_name,
        })
    }
}

/// Connection tuning that `serve` takes from flags and one-shot commands leave at the defaults.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub max_backoff: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            max_message_bytes: DEFAULT_MAX_HUB_MESSAGE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            keepalive: DEFAULT_KEEPALIVE,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// Where a setting came from, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A flag or its environment variable.
    CommandLine,
    ConfigFile,
}

/// The command line, the environment and the config file, resolved once:
/// flag > environment > config file > default.
#[derive(Debug)]
pub struct Resolved {
    pub config: ConfigFile,
    pub profile_name: String,
    pub profile: Profile,
    pub target: HubTarget,
}

impl Resolved {
    pub fn load(target: &HubTarget) -> anyhow::Result<Resolved> {
        let path = crate::paths::config_file(target.config.as_deref());
        let config = ConfigFile::load(&path)?;
        let profile_name = target
            .profile
            .clone()
            .or_else(|| config.default_profile())
            .unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        let profile = config.profile(&profile_name)?;
        if target.profile.is_some()
            && !config.profile_names().contains(&profile_name)
            && target.hub.is_none()
        {
            bail!(
                "profile {profile_name:?} is not in {} (profiles there: {:?}); create it with `aicp-bridge login --profile {profile_name} --hub URL`",
                path.display(),
                config.profile_names()
            );
        }
        Ok(Resolved {
            config,
            profile_name,
            profile,
            target: target.clone(),
        })
    }

    /// The hub URL as given, and where it came from; `None` if nowhere.
    pub fn hub_raw(&self) -> Option<(&str, Origin)> {
        match (&self.target.hub, &self.profile.hub) {
            (Some(url), _) => Some((url, Origin::CommandLine)),
            (None, Some(url)) => Some((url, Origin::ConfigFile)),
            _ => None,
        }
    }

    pub fn hub_url(&self) -> anyhow::Result<Url> {
        let Some((raw, _)) = self.hub_raw() else {
            bail!(
                "no hub URL: pass --hub URL, set AICP_HUB_URL, or save one in profile {:?} with `aicp-bridge login --hub URL`",
                self.profile_name
            );
        };
        parse_hub_url(
            raw,
            self.target.allow_insecure || self.profile.allow_insecure,
        )
    }

    pub fn lookup_token(
        &self,
        url: &Url,
    ) -> Result<credentials::Lookup, credentials::CredentialError> {
        credentials::lookup(
            self.target.token_file.as_deref(),
            self.profile.token_file.as_deref(),
            url,
        )
    }

    /// Defaults, then `[limits]`, then the profile's `limits`, then `--limit`.
    pub fn limits(&self, overrides: &[String]) -> anyhow::Result<Limits> {
        let mut limits = Limits::default();
        let from_file = self
            .config
            .global_limits()?
            .into_iter()
            .chain(self.profile.limits.clone());
        for (key, value) in from_file {
            limits
                .set(&format!("{key}={value}"))
                .with_context(|| format!("in {}", self.config.path.display()))?;
        }
        for assignment in overrides {
            limits.set(assignment)?;
        }
        Ok(limits)
    }

    pub fn hub_config(
        &self,
        url: Url,
        credential: Option<Credential>,
        tuning: Tuning,
    ) -> anyhow::Result<HubConfig> {
        let ca_file = self
            .target
            .ca_file
            .as_deref()
            .or(self.profile.ca_file.as_deref());
        let tls = match url.scheme() {
            "wss" => Some(crate::tls::client_config(ca_file)?),
            _ => None,
        };
        Ok(HubConfig {
            url,
            allow_insecure: self.target.allow_insecure || self.profile.allow_insecure,
            credential,
            tls,
            max_message_bytes: tuning.max_message_bytes,
            connect_timeout: tuning.connect_timeout,
            keepalive: tuning.keepalive,
            max_backoff: tuning.max_backoff,
            capabilities: self.profile.capabilities.clone(),
        })
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, not {value}"))
}

/// Checks the scheme and, for plain ws://, that the host is loopback: a bearer
/// token sent in clear over a network is as good as published.
pub fn parse_hub_url(raw: &str, allow_insecure: bool) -> anyhow::Result<Url> {
    let url = Url::parse(raw)
        .with_context(|| format!("hub URL {:?} is not a URL", redact_url_str(raw)))?;
    match url.scheme() {
        "wss" => {}
        "ws" if allow_insecure || is_loopback(&url) => {}
        "ws" => bail!(
            "refusing plain ws:// to {} (not loopback): use wss://, or pass --allow-insecure to send the token and all traffic unencrypted",
            url.host_str().unwrap_or("?")
        ),
        other => bail!("hub URL must start with ws:// or wss://, not {other}://"),
    }
    if url.host_str().is_none() {
        bail!("hub URL has no host");
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The URL as it may appear in logs: no password, and query values that look
/// like credentials replaced (some hubs take `?token=`).
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("REDACTED"));
    }
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let secret = ["token", "key", "secret", "auth", "password", "jwt"]
                    .iter()
                    .any(|s| k.to_ascii_lowercase().contains(s));
                (
                    k.into_owned(),
                    if secret {
                        "REDACTED".into()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

fn redact_url_str(raw: &str) -> String {
    Url::parse(raw)
        .map(|u| redact_url(&u))
        .unwrap_or_else(|_| "<unparsable>".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ws_only_to_loopback() {
        assert!(parse_hub_url("ws://127.0.0.1:8765/mcp", false).is_ok());
        assert!(parse_hub_url("ws://localhost:8765", false).is_ok());
        assert!(parse_hub_url("ws://[::1]:8765", false).is_ok());
        let err = parse_hub_url("ws://hub.example.com/mcp", false).unwrap_err();
        assert!(err.to_string().contains("--allow-insecure"), "{err}");
        assert!(parse_hub_url("ws://hub.example.com/mcp", true).is_ok());
        assert!(parse_hub_url("wss://hub.example.com/mcp", false).is_ok());
        assert!(parse_hub_url("http://hub.example.com/mcp", true).is_err());
    }

    #[test]
    fn redacts_password_and_token_query() {
        let url = Url::parse("wss://me:pw@hub.example.com/mcp?token=abc&room=x").unwrap();
        let shown = redact_url(&url);
        assert!(!shown.contains("pw@") && !shown.contains("abc"), "{shown}");
        assert!(shown.contains("room=x"), "{shown}");
    }
}
