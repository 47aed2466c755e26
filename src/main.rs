//! The `aicp-bridge` binary: parse the command line, set up logging, run the
//! command, and turn its outcome into an exit code. Everything else lives in
//! the library (`src/lib.rs` lists the modules).

use std::process::ExitCode;

use clap::Parser;

use aicp_bridge::cli::{Cli, Command};
use aicp_bridge::commands::{self, call, hub, install, login, share, status};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // serve (and hub, which becomes aicp-hub) keep Rust's ignored SIGPIPE: a peer leaving is an error to handle, not a reason to die.
    if !matches!(cli.command, Command::Serve(_) | Command::Hub { .. }) {
        restore_sigpipe();
    }
    let result = match cli.command {
        Command::Serve(args) => {
            aicp_bridge::commands::serve::serve_main(args).map(|()| ExitCode::SUCCESS)
        }
        Command::Hub { args } => hub::run(args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
        Command::Status(args) => status::status(args),
        Command::Share(args) => share::share(args),
        Command::Tools(args) => call::tools(args),
        Command::Call(args) => call::call(args),
        Command::Install(args) => install::install(args),
        Command::Uninstall(args) => install::uninstall(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "aicp-bridge", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|err| {
        // Printed once, with its cause chain, at the edge (stderr: stdout is the protocol).
        eprintln!("aicp-bridge: error: {err:#}");
        commands::exit_code_for(&err)
    })
}

/// Rust ignores SIGPIPE, so printing into a closed pipe panics. A command-line
/// tool should instead end quietly, as `head` expects; `serve` keeps the
/// default and treats a closed stdout as the host leaving.
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default at startup, before any threads.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
