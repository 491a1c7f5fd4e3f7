//! Hard bounds: every run is bounded in count and time.

/// Longest `--duration` (seconds), and longest ramp in total.
pub const MAX_DURATION_S: f64 = 3600.0;
/// Most connections in one run (all workers together).
pub const MAX_CLIENTS: u32 = 200_000;
/// Most deliveries scheduled per second (rate x rooms x subscribers per room is not bounded
/// here; this bounds what is *sent*).
pub const MAX_SEND_RATE: f64 = 2_000_000.0;
/// Largest `--payload`.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// Most worker processes.
pub const MAX_WORKERS: u32 = 64;
/// Most source addresses.
pub const MAX_SOURCE_IPS: u32 = 65_536;
/// Most ramp steps.
pub const MAX_STEPS: u32 = 40;
/// Most servers of a cluster run (`--url` given for each).
pub const MAX_SERVERS: usize = 64;
