//! The `vaultline` binary: parses the command line and hands over to the library.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = vaultline::cli::Cli::parse();
    match vaultline::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vaultline: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
