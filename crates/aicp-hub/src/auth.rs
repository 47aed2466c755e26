//! Who is connecting: HS256 JWTs signed with the hub's secret, checked on the
//! WebSocket upgrade (missing or invalid → HTTP 401 before any MCP traffic).
//! The subject is the agent's identity; the `scope` claim (space-separated,
//! as in OAuth) limits what it may do. The secret is generated on first start
//! into the data dir with mode 0600, or read from `--jwt-secret-file`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};

/// File name of the generated secret inside the data dir.
pub const SECRET_FILE: &str = "jwt-secret";
/// Shortest secret accepted from `--jwt-secret-file`: HS256 wants at least 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;
/// Issuer written into and required of every token, so tokens of another service sharing the secret are not taken.
pub const ISSUER: &str = "aicp-bridge-hub";
/// Longest `--ttl` accepted: ten years. Beyond it a token is as good as
/// permanent, and a TTL near `u64::MAX` seconds would overflow `exp` into the past.
pub const MAX_TTL_DAYS: u64 = 3650;
pub const MAX_TTL: Duration = Duration::from_secs(MAX_TTL_DAYS * 86_400);

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `share_context`: write shared state.
    Share,
    /// Read shared state and see who is connected.
    Read,
    /// Send and read messages, route and orchestrate work.
    Message,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Share, Scope::Read, Scope::Message];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Share => "share",
            Scope::Read => "read",
            Scope::Message => "message",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.name() == s)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of scopes a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scopes {
    share: bool,
    read: bool,
    message: bool,
}

impl Scopes {
    pub fn all() -> Scopes {
        Scopes {
            share: true,
            read: true,
            message: true,
        }
    }

    pub fn from_list<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, AuthError> {
        let mut s = Scopes {
            share: false,
            read: false,
            message: false,
        };
        for n in names {
            match Scope::parse(n.trim()) {
                Some(Scope::Share) => s.share = true,
                Some(Scope::Read) => s.read = true,
                Some(Scope::Message) => s.message = true,
                None if n.trim().is_empty() => {}
                None => return Err(AuthError::UnknownScope(n.trim().to_owned())),
            }
        }
        Ok(s)
    }

    pub fn has(self, scope: Scope) -> bool {
        match scope {
            Scope::Share => self.share,
            Scope::Read => self.read,
            Scope::Message => self.message,
        }
    }

    /// Space-separated, as the `scope` claim carries them.
    pub fn to_claim(self) -> String {
        Scope::ALL
            .into_iter()
            .filter(|s| self.has(*s))
            .map(Scope::name)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    iat: u64,
    exp: u64,
    /// Absent in a token means every scope: the hub's own secret signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Who a valid token says is connecting.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub subject: String,
    pub scopes: Scopes,
    /// The token's `iat` (unix seconds): checked against the subject's revocation time.
    pub issued_at: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no bearer token (send Authorization: Bearer <token>; issue one with `aicp-hub token --sub NAME`)"
    )]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("unknown scope {0:?} (known: share, read, message)")]
    UnknownScope(String),
    #[error("the JWT secret in {path} is {len} bytes; at least {MIN_SECRET_BYTES} are required")]
    ShortSecret { path: PathBuf, len: usize },
    #[error("a token may live at most {MAX_TTL_DAYS} days; {secs} seconds is longer")]
    TtlTooLong { secs: u64 },
    #[error("JWT secret {path}: {source}")]
    SecretIo {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The signing secret; never logged (secrecy keeps it out of Debug and zeroes it on drop).
#[derive(Debug)]
pub struct Secret(SecretBox<Vec<u8>>);

impl Secret {
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(SecretBox::new(Box::new(bytes)))
    }

    /// `--jwt-secret-file`: the file's bytes, surrounding whitespace trimmed.
    pub fn read_file(path: &Path) -> Result<Secret, AuthError> {
        let raw = std::fs::read(path).map_err(|source| AuthError::SecretIo {
            path: path.into(),
            source,
        })?;
        let trimmed = raw.trim_ascii().to_vec();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(AuthError::ShortSecret {
                path: path.into(),
                len: trimmed.len(),
            });
        }
        Ok(Secret::from_bytes(trimmed))
    }

    /// The data dir's secret, generated (32 random bytes, hex, mode 0600) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Secret, AuthError> {
        let path = data_dir.join(SECRET_FILE);
        let io = |source| AuthError::SecretIo {
            path: path.clone(),
            source,
        };
        if path.exists() {
            return Secret::read_file(&path);
        }
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| io(std::io::Error::other("the OS random source failed")))?;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&path).map_err(io)?;
        f.write_all(hex.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        tracing::info!(path = %path.display(), "generated a new JWT secret");
        Ok(Secret::from_bytes(hex.into_bytes()))
    }

    /// Signs a token for `sub` valid for `ttl` (at most [`MAX_TTL`]) from `now` (unix seconds).
    pub fn issue(
        &self,
        sub: &str,
        scopes: Scopes,
        ttl: Duration,
        now: u64,
    ) -> Result<String, AuthError> {
        let too_long = AuthError::TtlTooLong {
            secs: ttl.as_secs(),
        };
        if ttl > MAX_TTL {
            return Err(too_long);
        }
        let claims = Claims {
            sub: sub.to_owned(),
            iss: ISSUER.to_owned(),
            iat: now,
            exp: now.checked_add(ttl.as_secs()).ok_or(too_long)?,
            scope: Some(scopes.to_claim()),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(self.0.expose_secret()),
        )
        .expect("HS256 signing of plain claims cannot fail"))
    }

    /// Checks signature, algorithm, issuer, expiry and, when present, not-before.
    /// (Revocation needs the store: the listener checks `issued_at` against it.)
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        v.set_required_spec_claims(&["exp", "sub", "iss"]);
        // Expiry and not-before are strict: a refused token should not work for another minute,
        // nor a token meant for later work now.
        v.leeway = 0;
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(self.0.expose_secret()),
            &v,
        )
        .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let c = data.claims;
        if c.sub.trim().is_empty() {
            return Err(AuthError::Invalid("empty subject".into()));
        }
        let scopes = match &c.scope {
            None => Scopes::all(),
            Some(s) => {
                Scopes::from_list(s.split(' ')).map_err(|e| AuthError::Invalid(e.to_string()))?
            }
        };
        Ok(Principal {
            subject: c.sub,
            scopes,
            issued_at: c.iat,
        })
    }
}

/// Parses a TTL such as `30d`, `12h`, `90m`, `45s` or plain seconds.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad TTL {s:?}: expected e.g. 30d, 12h, 90m or 45s"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("bad TTL unit {other:?} in {s:?}: use s, m, h or d")),
    };
    if n == 0 {
        return Err("TTL must be positive".into());
    }
    match n.checked_mul(mult).map(Duration::from_secs) {
        Some(ttl) if ttl <= MAX_TTL => Ok(ttl),
        _ => Err(format!(
            "TTL {s:?} is too long: at most {MAX_TTL_DAYS} days ({}s)",
            MAX_TTL.as_secs()
        )),
    }
}

/// The bearer token of an `Authorization` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
    let h = header.ok_or(AuthError::Missing)?.trim();
    let (scheme, token) = h.split_once(' ').ok_or(AuthError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Missing);
    }
    Ok(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn issue_then_verify_round_trips_subject_and_scopes() {
        let s = Secret::from_bytes(vec![7; 32]);
        let scopes = Scopes::from_list(["read", "message"]).unwrap();
        let t = s
            .issue("alice", scopes, Duration::from_secs(60), now())
            .unwrap();
        let p = s.verify(&t).unwrap();
        assert_eq!(p.subject, "alice");
        assert!(p.scopes.has(Scope::Read) && p.scopes.has(Scope::Message));
        assert!(!p.scopes.has(Scope::Share));
    }

    #[test]
    fn wrong_secret_expired_and_garbage_are_refused() {
        let s = Secret::from_bytes(vec![7; 32]);
        let other = Secret::from_bytes(vec![8; 32]);
        let t = other
            .issue("mallory", Scopes::all(), Duration::from_secs(60), now())
            .unwrap();
        assert!(matches!(s.verify(&t), Err(AuthError::Invalid(_))));
        let old = s
            .issue("alice", Scopes::all(), Duration::from_secs(1), now() - 10)
            .unwrap();
        let err = s.verify(&old).unwrap_err().to_string();
        assert!(err.contains("Expired"), "{err}");
        assert!(s.verify("not.a.jwt").is_err());
    }

    #[test]
    fn secret_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let a = Secret::load_or_create(dir.path()).unwrap();
        let b = Secret::load_or_create(dir.path()).unwrap();
        let t = a
            .issue("x", Scopes::all(), Duration::from_secs(60), now())
            .unwrap();
        assert_eq!(b.verify(&t).unwrap().subject, "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn short_secret_file_says_the_minimum() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "short\n").unwrap();
        let err = Secret::read_file(&p).unwrap_err().to_string();
        assert!(err.contains("5 bytes") && err.contains("32"), "{err}");
    }

    #[test]
    fn not_before_is_checked_without_leeway() {
        let key = [7u8; 32];
        let s = Secret::from_bytes(key.to_vec());
        let token = |nbf: u64| {
            let claims = serde_json::json!({"sub": "alice", "iss": ISSUER, "iat": now(),
                "exp": now() + 600, "nbf": nbf});
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&key),
            )
            .unwrap()
        };
        let err = s.verify(&token(now() + 30)).unwrap_err().to_string();
        assert!(err.contains("ImmatureSignature"), "{err}");
        assert_eq!(s.verify(&token(now() - 1)).unwrap().subject, "alice");
    }

    #[test]
    fn ttls_beyond_ten_years_are_refused_not_wrapped() {
        assert_eq!(parse_ttl("3650d").unwrap(), MAX_TTL);
        for huge in [
            "3651d",
            "18446744073709551615",
            "18446744073709551615d",
            "999999999999h",
        ] {
            let err = parse_ttl(huge).unwrap_err();
            assert!(err.contains("3650 days"), "{huge}: {err}");
        }
        let s = Secret::from_bytes(vec![7; 32]);
        let err = s
            .issue("a", Scopes::all(), Duration::from_secs(u64::MAX), now())
            .unwrap_err();
        assert!(matches!(err, AuthError::TtlTooLong { .. }), "{err}");
        assert!(err.to_string().contains("3650"), "{err}");
        let t = s.issue("a", Scopes::all(), MAX_TTL, now()).unwrap();
        assert!(s.verify(&t).unwrap().issued_at <= now());
    }

    #[test]
    fn ttl_and_bearer_parsing() {
        assert_eq!(parse_ttl("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_ttl("90").unwrap(), Duration::from_secs(90));
        assert!(parse_ttl("3w").is_err());
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        assert!(matches!(bearer(None), Err(AuthError::Missing)));
        assert!(matches!(bearer(Some("Basic abc")), Err(AuthError::Missing)));
        assert!(Scopes::from_list(["share", "admin"]).is_err());
    }
}
