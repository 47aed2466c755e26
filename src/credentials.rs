//! Where the hub token comes from, and where `login` puts it.
//!
//! In order: `--token-file PATH`, the `AICP_TOKEN` environment variable, the
//! profile's `token_file`, then the OS keyring (macOS Keychain, Windows
//! Credential Manager, on Linux the Secret Service when a session bus and an
//! unlocked collection answer, else kernel keyutils). The first two and the
//! profile file are the explicit fallbacks for machines with no usable
//! keyring (SSH, CI, containers); nothing falls back silently, and `status`
//! names the source in use.
//!
//! The token is held as a [`SecretString`] so that it never reaches a log line
//! through `Debug`, and is zeroed when dropped. It is never written to the
//! config file, never taken from argv, never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keyring_core::{CredentialStore, Entry, Error as KeyringCoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

/// Environment variable holding a bearer token: an explicit fallback.
pub const TOKEN_ENV: &str = "AICP_TOKEN";

/// Environment variable choosing the keyring: `auto` (default),
/// `secret-service`, `keyutils`, `keychain`, `windows`, or `none`.
pub const KEYRING_ENV: &str = "AICP_KEYRING";

/// The keyring "service" every aicp-bridge entry is filed under.
pub const SERVICE: &str = "aicp-bridge";

/// Where a token was found, so that logs and `status` can name it without showing it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TokenSource {
    /// `--token-file` or the profile's `token_file`.
    File {
        path: PathBuf,
    },
    Env,
    Keyring {
        backend: Backend,
    },
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env => write!(f, "environment variable {TOKEN_ENV}"),
            TokenSource::File { path } => write!(f, "token file {}", path.display()),
            TokenSource::Keyring { backend } => write!(f, "OS keyring ({backend})"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    SecretService,
    Keyutils,
    Keychain,
    WindowsCredentialManager,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::SecretService => "Secret Service over D-Bus",
            Backend::Keyutils => "kernel keyutils; kept in memory, lost at reboot",
            Backend::Keychain => "macOS Keychain",
            Backend::WindowsCredentialManager => "Windows Credential Manager",
        })
    }
}

#[derive(Debug)]
pub struct Credential {
    pub token: SecretString,
    pub source: TokenSource,
}

impl Credential {
    /// Logs a warning if the token sits in a file other users can read.
    pub fn warn_if_exposed(&self) {
        if let TokenSource::File { path } = &self.source {
            warn_if_readable_by_others(path);
        }
    }

    /// The value for an `Authorization` header.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose_secret())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read token file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} is empty")]
    Empty { path: PathBuf },
    #[error("token from {from} contains a control character or space; a bearer token cannot")]
    Malformed { from: TokenSource },
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyringError {
    #[error(
        "no OS keyring is usable here ({reasons}). Use an explicit fallback: set {TOKEN_ENV}, or put the \
         token alone in a file only you can read (chmod 600) and pass --token-file PATH or set token_file \
         in the profile"
    )]
    Unavailable { reasons: String },
    #[error("the OS keyring ({backend}) failed: {detail}")]
    Failed { backend: Backend, detail: String },
}

/// The keyring entry name for a hub: its scheme, host and port. Keyed by
/// hub, not by profile, so a token can never be sent to a hub it was not
/// issued for when a profile's URL changes.
pub fn account(hub: &Url) -> String {
    let host = hub.host_str().unwrap_or("").to_ascii_lowercase();
    match hub.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", hub.scheme()),
        None => format!("{}://{host}", hub.scheme()),
    }
}

/// An OS keyring that answered.
#[derive(Clone)]
pub struct Keyring {
    pub backend: Backend,
    store: Arc<CredentialStore>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Keyring {
    /// Finds a usable keyring, or says why there is none.
    pub fn open() -> Result<Keyring, KeyringError> {
        let choice = std::env::var(KEYRING_ENV).unwrap_or_default();
        let choice = choice.trim();
        let tried: Vec<Result<Keyring, String>> = match choice {
            "" | "auto" => platform::auto(),
            "none" => vec![Err(format!("{KEYRING_ENV}=none"))],
            named => vec![platform::named(named)],
        };
        let mut reasons = Vec::new();
        for attempt in tried {
            match attempt {
                Ok(keyring) => return Ok(keyring),
                Err(reason) => reasons.push(reason),
            }
        }
        Err(KeyringError::Unavailable {
            reasons: reasons.join("; "),
        })
    }

    fn entry(&self, account: &str) -> Result<Entry, KeyringError> {
        self.store
            .build(SERVICE, account, None)
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, e: KeyringCoreError) -> KeyringError {
        KeyringError::Failed {
            backend: self.backend,
            detail: e.to_string(),
        }
    }

    pub fn get(&self, account: &str) -> Result<Option<SecretString>, KeyringError> {
        match self.entry(account)?.get_password() {
            Ok(token) => Ok(Some(SecretString::from(token))),
            Err(KeyringCoreError::NoEntry) => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    pub fn set(&self, account: &str, token: &SecretString) -> Result<(), KeyringError> {
        self.entry(account)?
            .set_password(token.expose_secret())
            .map_err(|e| self.failed(e))
    }

    /// Removes the entry; `Ok(false)` if there was none.
    pub fn delete(&self, account: &str) -> Result<bool, KeyringError> {
        match self.entry(account)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringCoreError::NoEntry) => Ok(false),
            Err(e) => Err(self.failed(e)),
        }
    }
}

/// Checks that a store can answer a lookup: a store that cannot (no bus, a
/// locked collection) is no use, and saying so now beats a confusing error later.
fn probe(backend: Backend, store: Arc<CredentialStore>) -> Result<Keyring, String> {
    let keyring = Keyring { backend, store };
    match keyring
        .entry("probe")
        .map_err(|e| e.to_string())?
        .get_password()
    {
        Ok(_) | Err(KeyringCoreError::NoEntry) => Ok(keyring),
        Err(KeyringCoreError::NoStorageAccess(e)) => {
            Err(format!("{backend}: locked or not accessible ({e})"))
        }
        Err(e) => Err(format!("{backend}: {e}")),
    }
}

#[cfg(target_os = "linux")]
mod platform {
    use super::*;

    pub fn auto() -> Vec<Result<Keyring, String>> {
        // Secret Service first: it persists and is what desktop users expect.
        match secret_service() {
            Ok(k) => vec![Ok(k)],
            Err(why) => vec![Err(why), keyutils()],
        }
    }

    pub fn named(name: &str) -> Result<Keyring, String> {
        match name {
            "secret-service" => secret_service(),
            "keyutils" => keyutils(),
            other => Err(format!(
                "{KEYRING_ENV}={other} is not available on Linux (secret-service, keyutils, none)"
            )),
        }
    }

    fn secret_service() -> Result<Keyring, String> {
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
            return Err(
                "Secret Service: no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is not set)".into(),
            );
        }
        let store = zbus_secret_service_keyring_store::Store::new()
            .map_err(|e| format!("Secret Service: no service answered on the session bus ({e})"))?;
        probe(Backend::SecretService, store)
    }

    fn keyutils() -> Result<Keyring, String> {
        use linux_keyutils::{KeyRing, KeyRingIdentifier};
        // Without a session keyring keyutils reports "no matching entry" for
        // everything, which reads as "not logged in". Say what is really wrong.
        if KeyRing::from_special_id(KeyRingIdentifier::Session, false).is_err() {
            return Err("keyutils: this process has no kernel session keyring (common under sudo, cron and \
                        some containers; start a shell with `keyctl session -`)"
                .into());
        }
        let store =
            linux_keyutils_keyring_store::Store::new().map_err(|e| format!("keyutils: {e}"))?;
        probe(Backend::Keyutils, store)
    }
}

#[cfg(target_os = "macos")]
mod platform {
    use super::*;

    pub fn auto() -> Vec<Result<Keyring, String>> {
        vec![named("keychain")]
    }

    pub fn named(name: &str) -> Result<Keyring, String> {
        match name {
            "keychain" => {
                let store = apple_native_keyring_store::keychain::Store::new()
                    .map_err(|e| format!("Keychain: {e}"))?;
                probe(Backend::Keychain, store)
            }
            other => Err(format!(
                "{KEYRING_ENV}={other} is not available on macOS (keychain, none)"
            )),
        }
    }
}

#[cfg(target_os = "windows")]
mod platform {
    use super::*;

    pub fn auto() -> Vec<Result<Keyring, String>> {
        vec![named("windows")]
    }

    pub fn named(name: &str) -> Result<Keyring, String> {
        match name {
            "windows" => {
                let store = windows_native_keyring_store::Store::new()
                    .map_err(|e| format!("Credential Manager: {e}"))?;
                probe(Backend::WindowsCredentialManager, store)
            }
            other => Err(format!(
                "{KEYRING_ENV}={other} is not available on Windows (windows, none)"
            )),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
mod platform {
    use super::*;

    pub fn auto() -> Vec<Result<Keyring, String>> {
        vec![Err("no keyring backend is built for this platform".into())]
    }

    pub fn named(name: &str) -> Result<Keyring, String> {
        Err(format!(
            "{KEYRING_ENV}={name}: no keyring backend is built for this platform"
        ))
    }
}

/// The outcome of looking for a token, with what `status` reports.
#[derive(Debug)]
pub struct Lookup {
    pub credential: Option<Credential>,
    /// The keyring, or why none is usable; `None` if it was never consulted
    /// because an explicit source came first.
    pub keyring: Option<Result<Keyring, KeyringError>>,
}

/// Finds the token for `hub`: `--token-file`, `AICP_TOKEN`, the profile's
/// `token_file`, then the keyring. A keyring that cannot be used is not an
/// error here (an open hub needs no token); it is reported in the lookup.
pub fn lookup(
    flag_file: Option<&Path>,
    profile_file: Option<&Path>,
    hub: &Url,
) -> Result<Lookup, CredentialError> {
    if let Some(path) = flag_file {
        return Ok(Lookup {
            credential: Some(from_file(path)?),
            keyring: None,
        });
    }
    if let Ok(token) = std::env::var(TOKEN_ENV)
        && !token.trim().is_empty()
    {
        return Ok(Lookup {
            credential: Some(checked(token.trim(), TokenSource::Env)?),
            keyring: None,
        });
    }
    if let Some(path) = profile_file {
        return Ok(Lookup {
            credential: Some(from_file(path)?),
            keyring: None,
        });
    }
    let keyring = Keyring::open();
    let credential = match &keyring {
        Ok(k) => k.get(&account(hub))?.map(|token| Credential {
            token,
            source: TokenSource::Keyring { backend: k.backend },
        }),
        Err(_) => None,
    };
    Ok(Lookup {
        credential,
        keyring: Some(keyring),
    })
}

/// Reads a token from the first line of a file.
pub fn from_file(path: &Path) -> Result<Credential, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
        path: path.to_owned(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim();
    if token.is_empty() {
        return Err(CredentialError::Empty {
            path: path.to_owned(),
        });
    }
    checked(
        token,
        TokenSource::File {
            path: path.to_owned(),
        },
    )
}

/// Validates a token given on stdin or at a prompt.
pub fn from_input(token: &str) -> Result<SecretString, CredentialError> {
    checked(token.trim(), TokenSource::Env).map(|c| c.token)
}

fn checked(token: &str, source: TokenSource) -> Result<Credential, CredentialError> {
    // A token goes into an HTTP header: anything else would be refused there
    // with an error that could echo part of it.
    if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(CredentialError::Malformed { from: source });
    }
    Ok(Credential {
        token: SecretString::from(token.to_owned()),
        source,
    })
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "token file is readable by other users; run: chmod 600 {}",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_first_line_of_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc.def\nignored\n").unwrap();
        let cred = from_file(&path).unwrap();
        assert_eq!(cred.token.expose_secret(), "abc.def");
        assert_eq!(cred.source, TokenSource::File { path });
        assert_eq!(cred.bearer(), "Bearer abc.def");
    }

    #[test]
    fn empty_or_malformed_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            from_file(&path),
            Err(CredentialError::Empty { .. })
        ));
        std::fs::write(&path, "two words").unwrap();
        assert!(matches!(
            from_file(&path),
            Err(CredentialError::Malformed { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let cred = checked("s3cret-token", TokenSource::Env).unwrap();
        assert!(!format!("{cred:?}").contains("s3cret-token"));
    }

    #[test]
    fn accounts_are_per_hub_origin() {
        let a = Url::parse("wss://Hub.Example.com/mcp").unwrap();
        let b = Url::parse("wss://hub.example.com:443/other").unwrap();
        let c = Url::parse("ws://127.0.0.1:8765/mcp").unwrap();
        assert_eq!(account(&a), "wss://hub.example.com:443");
        assert_eq!(account(&a), account(&b));
        assert_eq!(account(&c), "ws://127.0.0.1:8765");
    }
}
