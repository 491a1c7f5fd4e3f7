//! The clients of one process: T threads, each a current-thread tokio runtime that owns its
//! connections and its measurements with no lock (`Rc<RefCell<_>>`), plus the process-level
//! aggregator that turns the threads' reports into [`FromWorker`](crate::link::FromWorker)
//! messages.
//!
//! Per connection, one task: connect, join with ack, then a loop that answers pings, scans
//! deliveries (no JSON values on the hot path) and sends on an open-loop schedule. A
//! connection that only receives leaves its task once joined: the thread's event loop
//! (`hot`) serves all of those sockets at once.
//!
//! From the process down to one connection:
//!
//! - `process`: the aggregator: starts the client threads, passes the coordinator's commands
//!   on, merges the threads' reports and live gauges;
//! - `control`: what the threads are told, and the lock-free view of it a thread's tasks share;
//! - `thread`: one client thread: its runtime, the state its tasks share, its stages;
//! - `measure`: a thread's live gauges and its measurements of the current stage;
//! - `client`: one connection of fanout, lobby, echo or idle: connect, join, receive and send;
//! - `receiver`: the receiving side of a connection: deliveries scanned and counted;
//! - `publisher`: the open-loop sender of a connection;
//! - `hot`: the thread's one event loop over its receive-only WebSocket connections, once set up;
//! - `connect`: the `connect` scenario: the schedule of attempts and one attempt.

mod client;
mod connect;
mod control;
mod hot;
mod measure;
mod process;
mod publisher;
mod receiver;
mod thread;

pub use process::run_process;
