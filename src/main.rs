//! The `aicp-bridge` binary: parse the command line, set up logging, run the
//! command, and turn its outcome into an exit code. Everything else lives in
//! the library (`src/lib.rs` lists the modules).

use std::process::ExitCode;

use clap::Parser;

use aicp_bridge::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => aicp_bridge::serve::serve_main(args),
        Command::Hub(args) => aicp_bridge::hub::hub_main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Printed once, with its cause chain, at the edge (stderr: stdout is the protocol).
            eprintln!("aicp-bridge: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
