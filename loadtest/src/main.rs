//! `shardcast-loadtest`: the command line. See `--help` and docs/loadtest.md.

use std::process::ExitCode;

use clap::Parser;
use shardcast_loadtest::plan::{Cli, Command, Plan};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let r = match &cli.command {
        Command::Worker => shardcast_loadtest::link::worker_main(),
        Command::Hostile(a) => match shardcast_loadtest::hostile::run(a) {
            Ok(report) => {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
                if report.pass {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("hostile: {}", report.failures.join("; ")))
                }
            }
            Err(e) => Err(e),
        },
        Command::Soak(a) => match shardcast_loadtest::soak::run(a) {
            Ok(report) => {
                println!("{}", shardcast_loadtest::soak::summary(&report));
                if report.pass {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("soak: {}", report.failures.join("; ")))
                }
            }
            Err(e) => Err(e),
        },
        cmd => match Plan::from_command(cmd) {
            // Flags that parse but do not validate are usage errors too.
            Err(e) => {
                eprintln!("shardcast-loadtest: {e:#}");
                return ExitCode::from(2);
            }
            Ok((plan, out)) => shardcast_loadtest::run_plan(plan, &out).map(|_| ()),
        },
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shardcast-loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}
