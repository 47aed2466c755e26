//! `login` checks a token against the hub and stores it in the OS keyring,
//! and saves the hub URL in the profile; `logout` removes the token. The
//! token comes from a hidden prompt or stdin, never from the command line,
//! and is never written to the config file.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;

use super::block_on;
use crate::cli::{LoginArgs, TargetArgs};
use crate::commands::client::HubClient;
use crate::config::{Origin, Resolved, Tuning, redact_url};
use crate::credentials::{self, Credential, Keyring, TokenSource};

pub fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let mut resolved = Resolved::load(&args.target)?;
    let url = resolved.hub_url()?;
    let token = read_token(&args, &redact_url(&url))?;

    // Check the keyring first: no point verifying a token we cannot keep.
    let keyring = Keyring::open()?;

    if !args.no_verify {
        let credential = Credential {
            token: token.clone(),
            source: TokenSource::Env,
        };
        let cfg = resolved.hub_config(url.clone(), Some(credential), Tuning::default())?;
        let server = block_on(async {
            let client = HubClient::connect(&cfg, Duration::from_secs(15)).await?;
            let info = client.server.clone();
            client.close().await;
            Ok::<_, anyhow::Error>(info)
        })?
        .with_context(|| {
            format!(
                "the token was not stored: checking it against {} failed",
                redact_url(&url)
            )
        })?;
        eprintln!(
            "verified: {} {} accepted the token (protocol {})",
            server["serverInfo"]["name"].as_str().unwrap_or("the hub"),
            server["serverInfo"]["version"].as_str().unwrap_or(""),
            server["protocolVersion"].as_str().unwrap_or("?")
        );
    }

    let account = credentials::account(&url);
    keyring.set(&account, &token)?;
    let profile = resolved.profile_name.clone();
    // A hub given by flag or environment is saved; one from the profile is there already.
    if matches!(resolved.hub_raw(), Some((_, Origin::CommandLine))) {
        resolved
            .config
            .set_profile_str(&profile, "hub", url.as_str());
        if resolved.config.default_profile().is_none() {
            resolved.config.set_default_profile(&profile);
        }
        resolved.config.save()?;
    }
    println!(
        "logged in to {} (profile {profile}); token stored in the OS keyring ({})",
        redact_url(&url),
        keyring.backend
    );
    if std::env::var_os(credentials::TOKEN_ENV).is_some() {
        eprintln!(
            "note: {} is set and takes precedence over the keyring",
            credentials::TOKEN_ENV
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn read_token(args: &LoginArgs, hub: &str) -> anyhow::Result<SecretString> {
    let raw = if args.token_stdin {
        super::read_stdin()?
    } else if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Token for {hub} (input hidden): "))
            .context("cannot read the token")?
    } else {
        bail!(
            "no terminal to prompt on: pipe the token in with --token-stdin (it is never taken from the command line)"
        );
    };
    Ok(credentials::from_input(&raw)?)
}

pub fn logout(args: TargetArgs) -> anyhow::Result<ExitCode> {
    let resolved = Resolved::load(&args.target)?;
    let url = resolved.hub_url()?;
    let account = credentials::account(&url);
    let keyring = Keyring::open()?;
    if keyring.delete(&account)? {
        println!(
            "removed the token for {account} from the OS keyring ({})",
            keyring.backend
        );
    } else {
        println!(
            "no token for {account} was stored in the OS keyring ({})",
            keyring.backend
        );
    }
    if std::env::var_os(credentials::TOKEN_ENV).is_some() {
        eprintln!(
            "note: {} is still set in this environment and still gives a token",
            credentials::TOKEN_ENV
        );
    }
    if let Some(path) = &resolved.profile.token_file {
        eprintln!(
            "note: profile {} still names token_file {}",
            resolved.profile_name,
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
