//! Crash-test helper: writes keys to an embedded store in a loop, printing each one once acknowledged.
//!
//! Usage: `svcnet-store-crash-writer <data-dir> <key-prefix>`. Each line on
//! stdout is `<key> <revision>`, printed only after the write returned, so
//! a parent that kills this process at any moment knows which writes were
//! acknowledged and must survive.

use std::io::Write;

use svcnet_store::{EmbeddedStore, Store};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, prefix] = args.as_slice() else {
        eprintln!("usage: svcnet-store-crash-writer <data-dir> <key-prefix>");
        return std::process::ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(dir, prefix)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash writer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(dir: &str, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = EmbeddedStore::open(dir).await?;
    let mut out = std::io::stdout().lock();
    // Bounded so a parent that never kills it still terminates.
    for i in 0..100_000u32 {
        let key = format!("{prefix}{i:08}");
        let rev = store
            .create(key.as_bytes(), format!("value-{i}").as_bytes())
            .await?;
        writeln!(out, "{key} {rev}")?;
        out.flush()?;
    }
    Ok(())
}
