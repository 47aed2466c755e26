//! Where the hub token comes from. For now: a file named with `--token-file`,
//! or the `AICP_TOKEN` environment variable. The OS keyring plugs in here as one
//! more [`TokenSource`]; the rest of the program only sees a [`Credential`].
//!
//! The token is held as a [`SecretString`] so that it never reaches a log line
//! through `Debug`, and is zeroed when dropped.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

/// Environment variable holding a bearer token.
pub const TOKEN_ENV: &str = "AICP_TOKEN";

/// Where a token was found, so that logs and `status` can name it without showing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env,
    File(PathBuf),
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Env => write!(f, "environment variable {TOKEN_ENV}"),
            TokenSource::File(path) => write!(f, "token file {}", path.display()),
        }
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
        if let TokenSource::File(path) = &self.source {
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
}

/// Finds the token: `token_file` if given, else the environment. `Ok(None)` means
/// no token at all, which is fine for an open hub.
pub fn load(token_file: Option<&Path>) -> Result<Option<Credential>, CredentialError> {
    if let Some(path) = token_file {
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
        return checked(token, TokenSource::File(path.to_owned())).map(Some);
    }
    match std::env::var(TOKEN_ENV) {
        Ok(token) if !token.trim().is_empty() => checked(token.trim(), TokenSource::Env).map(Some),
        _ => Ok(None),
    }
}

fn checked(token: &str, source: TokenSource) -> Result<Credential, CredentialError> {
    // A token goes into an HTTP header: anything else would be refused there
    // with an error that could echo part of it.
    if token.chars().any(|c| c.is_control() || c == ' ') {
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
        let cred = load(Some(&path)).unwrap().unwrap();
        assert_eq!(cred.token.expose_secret(), "abc.def");
        assert_eq!(cred.source, TokenSource::File(path));
        assert_eq!(cred.bearer(), "Bearer abc.def");
    }

    #[test]
    fn empty_or_malformed_token_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(
            load(Some(&path)),
            Err(CredentialError::Empty { .. })
        ));
        std::fs::write(&path, "two words").unwrap();
        assert!(matches!(
            load(Some(&path)),
            Err(CredentialError::Malformed { .. })
        ));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let cred = checked("s3cret-token", TokenSource::Env).unwrap();
        assert!(!format!("{cred:?}").contains("s3cret-token"));
    }
}
