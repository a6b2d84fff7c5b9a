//! `fakeprovider [--port N] [--key K]...`: runs the fake provider on 127.0.0.1,
//! prints its base address on the first line of stdout, and serves until killed.
//! Script it over HTTP (`POST /_fake/script`, `GET /_fake/requests`,
//! `POST /_fake/reset`); see the library's documentation for the steps.

use std::io::Write;
use std::net::SocketAddr;

use vaultline_fakeprovider::{DEFAULT_KEY, FakeProvider};

const USAGE: &str =
    "usage: fakeprovider [--port N] [--key K]... (default key: fake-key-0000000001)";

fn parse_args() -> Result<(u16, Vec<String>), String> {
    let mut port = 0;
    let mut keys = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                let v = args.next().ok_or("--port needs a number")?;
                port = v.parse().map_err(|_| format!("--port {v}: not a port"))?;
            }
            "--key" => keys.push(args.next().ok_or("--key needs a value")?),
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if keys.is_empty() {
        keys.push(DEFAULT_KEY.to_string());
    }
    Ok((port, keys))
}

#[tokio::main]
async fn main() {
    let (port, keys) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let fake = match FakeProvider::bind(SocketAddr::from(([127, 0, 0, 1], port)), keys).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fakeprovider: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", fake.url());
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
}
