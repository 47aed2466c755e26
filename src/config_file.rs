//! The config file: TOML with named profiles, one per hub a user talks to.
//!
//! ```toml
//! default_profile = "work"
//!
//! [limits]                 # loop limits for every profile (docs/limits.md)
//! max_hops = 6
//!
//! [profiles.work]
//! hub = "wss://hub.example.com/mcp"
//! capabilities = ["rust", "code-review"]
//! # ca_file = "/etc/ssl/private-ca.pem"
//! # token_file = "/home/me/.config/aicp-bridge/work.token"   # explicit fallback when there is no keyring
//!
//! [profiles.work.limits]   # this profile only, over [limits]
//! repeat_limit = 3
//! ```
//!
//! Reading is split from parsing so the parser is tested on text. Writes go
//! through toml_edit's document, so comments and keys this version does not
//! know survive; they are atomic and owner-only ([`crate::paths::write_private`]).
//! No secret is ever written here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use toml_edit::{DocumentMut, Item, Table, value};

/// The profile used when none is named anywhere.
pub const DEFAULT_PROFILE: &str = "default";

/// One `[profiles.NAME]` table, as read. Every field is optional: flags and
/// environment variables fill in or override.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Profile {
    pub hub: Option<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub allow_insecure: bool,
    /// Also send the token in `initialize` `_meta["aicp/auth"]` (hubs that authenticate there).
    #[serde(default)]
    pub token_in_initialize: bool,
    /// Limit overrides for this profile: key to number.
    #[serde(default)]
    pub limits: BTreeMap<String, f64>,
}

#[derive(Debug)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub exists: bool,
    doc: DocumentMut,
}

impl ConfigFile {
    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> anyhow::Result<ConfigFile> {
        match std::fs::read_to_string(path) {
            Ok(text) => ConfigFile::parse(path, &text, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                ConfigFile::parse(path, "", false)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read config file {}", path.display())),
        }
    }

    pub fn parse(path: &Path, text: &str, exists: bool) -> anyhow::Result<ConfigFile> {
        let doc: DocumentMut = text
            .parse()
            .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
        let file = ConfigFile {
            path: path.to_owned(),
            exists,
            doc,
        };
        // Fail early, naming the profile, rather than when a command reads it.
        for name in file.profile_names() {
            file.profile(&name)?;
        }
        file.global_limits()?;
        Ok(file)
    }

    pub fn default_profile(&self) -> Option<String> {
        self.doc
            .get("default_profile")
            .and_then(Item::as_str)
            .map(str::to_owned)
    }

    pub fn profile_names(&self) -> Vec<String> {
        self.doc
            .get("profiles")
            .and_then(Item::as_table_like)
            .map(|t| t.iter().map(|(k, _)| k.to_owned()).collect())
            .unwrap_or_default()
    }

    /// The named profile; an absent profile reads as empty.
    pub fn profile(&self, name: &str) -> anyhow::Result<Profile> {
        let Some(table) = self.doc.get("profiles").and_then(|p| p.get(name)) else {
            return Ok(Profile::default());
        };
        let text = match table.as_table_like() {
            Some(_) => table_text(table),
            None => anyhow::bail!(
                "[profiles.{name}] in {} must be a table",
                self.path.display()
            ),
        };
        toml_edit::de::from_str(&text)
            .with_context(|| format!("[profiles.{name}] in {} is invalid", self.path.display()))
    }

    /// Top-level `[limits]`, applying to every profile.
    pub fn global_limits(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        match self.doc.get("limits") {
            None => Ok(BTreeMap::new()),
            Some(item) => toml_edit::de::from_str(&table_text(item)).with_context(|| {
                format!(
                    "[limits] in {} must map names to numbers",
                    self.path.display()
                )
            }),
        }
    }

    /// Sets `profiles.<profile>.<key>` to a string, creating tables as needed.
    pub fn set_profile_str(&mut self, profile: &str, key: &str, val: &str) {
        let profiles = self.doc.entry("profiles").or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        if let Some(profiles) = profiles.as_table_like_mut() {
            let entry = profiles.entry(profile).or_insert(Item::Table(Table::new()));
            if let Some(t) = entry.as_table_like_mut() {
                // Keep a comment that followed the old value.
                let mut new = toml_edit::Value::from(val);
                if let Some(old) = t.get(key).and_then(Item::as_value) {
                    *new.decor_mut() = old.decor().clone();
                }
                t.insert(key, Item::Value(new));
            }
        }
    }

    pub fn set_default_profile(&mut self, profile: &str) {
        self.doc.insert("default_profile", value(profile));
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self) -> anyhow::Result<()> {
        crate::paths::write_private(&self.path, self.text().as_bytes())
            .with_context(|| format!("cannot write config file {}", self.path.display()))
    }

    /// The document as it would be saved.
    pub fn text(&self) -> String {
        self.doc.to_string()
    }
}

/// A table item as standalone TOML text, for typed deserialization.
fn table_text(item: &Item) -> String {
    match item {
        Item::Table(t) => {
            let mut doc = DocumentMut::new();
            for (k, v) in t.iter() {
                doc.insert(k, v.clone());
            }
            doc.to_string()
        }
        Item::Value(toml_edit::Value::InlineTable(t)) => {
            let mut doc = DocumentMut::new();
            for (k, v) in t.iter() {
                doc.insert(k, Item::Value(v.clone()));
            }
            doc.to_string()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"# my settings
default_profile = "work"
future_key = "kept"

[limits]
max_hops = 6

[profiles.work]
hub = "wss://hub.example.com/mcp"   # the team hub
capabilities = ["rust", "review"]
unknown_in_profile = 1

[profiles.work.limits]
repeat_limit = 3

[profiles.home]
hub = "ws://127.0.0.1:8765/mcp"
"#;

    fn sample() -> ConfigFile {
        ConfigFile::parse(Path::new("/x/config.toml"), SAMPLE, true).unwrap()
    }

    #[test]
    fn reads_profiles_limits_and_default() {
        let file = sample();
        assert_eq!(file.default_profile().as_deref(), Some("work"));
        assert_eq!(file.profile_names(), ["work", "home"]);
        let work = file.profile("work").unwrap();
        assert_eq!(work.hub.as_deref(), Some("wss://hub.example.com/mcp"));
        assert_eq!(work.capabilities, ["rust", "review"]);
        assert_eq!(work.limits.get("repeat_limit"), Some(&3.0));
        assert_eq!(file.global_limits().unwrap().get("max_hops"), Some(&6.0));
        assert_eq!(file.profile("absent").unwrap(), Profile::default());
    }

    #[test]
    fn edits_keep_comments_and_unknown_keys() {
        let mut file = sample();
        file.set_profile_str("work", "hub", "wss://other.example.com/mcp");
        file.set_profile_str("new", "hub", "ws://localhost:1/mcp");
        let text = file.text();
        for kept in [
            "# my settings",
            "future_key = \"kept\"",
            "# the team hub",
            "unknown_in_profile = 1",
            "repeat_limit = 3",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
        let again = ConfigFile::parse(Path::new("/x"), &text, true).unwrap();
        assert_eq!(
            again.profile("work").unwrap().hub.as_deref(),
            Some("wss://other.example.com/mcp")
        );
        assert_eq!(
            again.profile("new").unwrap().hub.as_deref(),
            Some("ws://localhost:1/mcp")
        );
    }

    #[test]
    fn bad_files_name_the_problem() {
        let err =
            ConfigFile::parse(Path::new("/x/c.toml"), "[profiles.a]\nhub = 3\n", true).unwrap_err();
        assert!(format!("{err:#}").contains("[profiles.a]"), "{err:#}");
        let err = ConfigFile::parse(Path::new("/x/c.toml"), "not toml =", true).unwrap_err();
        assert!(format!("{err:#}").contains("not valid TOML"), "{err:#}");
        let err = ConfigFile::parse(Path::new("/x/c.toml"), "[limits]\nmax_hops = \"x\"\n", true)
            .unwrap_err();
        assert!(format!("{err:#}").contains("[limits]"), "{err:#}");
    }

    #[test]
    fn missing_file_is_empty_and_save_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aicp/config.toml");
        let mut file = ConfigFile::load(&path).unwrap();
        assert!(!file.exists);
        file.set_profile_str("default", "hub", "ws://127.0.0.1:9/mcp");
        file.save().unwrap();
        let back = ConfigFile::load(&path).unwrap();
        assert!(back.exists);
        assert_eq!(
            back.profile("default").unwrap().hub.as_deref(),
            Some("ws://127.0.0.1:9/mcp")
        );
    }
}
