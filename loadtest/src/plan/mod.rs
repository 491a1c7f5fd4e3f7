//! The plan of a run: the command line (clap), validated and bounded into a [`Plan`] that the
//! coordinator and every worker process share, and the deterministic roster that says which
//! connection does what, in which worker and thread.
//!
//! - [`limits`]: the hard bounds of every run;
//! - `cli`: the command line ([`Cli`], [`Command`] and the flags of each scenario);
//! - `model`: the validated [`Plan`] and its parts, and the coordinator's [`Output`];
//! - `validate`: from a [`Command`] to a [`Plan`]: the checks and the bounds the plan implies;
//! - `roster`: which connection does what ([`Role`], [`Publish`]), in which worker;
//! - `steps`: the order of the phases ([`Steps`]): warm-up, ramp steps, refinement.

pub mod limits;

mod cli;
mod model;
mod roster;
mod steps;
mod validate;

pub use cli::{
    Cli, Command, CommonArgs, ConnectArgs, EchoArgs, FanoutArgs, HostileArgs, IdleArgs, LobbyArgs,
    RampArgs, RoomArgs, Shape, SoakArgs, TrafficArgs,
};
pub use model::{Output, Plan, RampPlan, RecoverPlan, Scenario, ServerAddr};
pub use roster::{Publish, Role};
pub use steps::{Step, Steps};

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// The plan of a command line; the submodules' tests share it.
    pub(super) fn plan(args: &[&str]) -> anyhow::Result<Plan> {
        let mut v = vec!["shardcast-loadtest"];
        v.extend_from_slice(args);
        let cli = Cli::try_parse_from(v)?;
        Ok(Plan::from_command(&cli.command)?.0)
    }
}
