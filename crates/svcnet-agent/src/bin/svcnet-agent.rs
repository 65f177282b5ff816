//! Standalone agent binary (tests, single-node use); `svcnet agent` is the usual entry point.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "svcnet-agent")]
// Parsed once at start: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Run the node agent.
    Agent(svcnet_agent::AgentArgs),
    /// Internal: enter a pod or run a built-in image.
    #[command(hide = true)]
    Builtin {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cmd = Cmd::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match cmd {
        Cmd::Agent(a) => {
            rt.block_on(svcnet_agent::run(a, async {
                let _ = tokio::signal::ctrl_c().await;
            }))?;
            Ok(())
        }
        Cmd::Builtin { args } => {
            let code = rt.block_on(svcnet_agent::builtin_main(args));
            std::process::exit(code)
        }
    }
}
