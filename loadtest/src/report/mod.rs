//! The results: the JSON document (`--json`), the human table, and the self-contained HTML
//! report with inline SVG charts (`--report`).
//!
//! - `document`: the JSON document, [`Report`] and its parts;
//! - `build`: the report of a coordinator outcome ([`build()`], [`run_latencies()`]);
//! - `table`: the human table ([`table()`]);
//! - `chart`: inline SVG line charts;
//! - `html`: the HTML report ([`html()`]).

mod build;
mod chart;
mod document;
mod html;
mod table;

pub use build::{build, run_latencies, BOTTLENECK_CPU_SHARE};
pub use document::{
    ClusterReport, ClusterServer, ConnectReport, Connections, Environment, GroupReport,
    HarnessReport, Hop, PubRow, Publishers, RampReport, Report, Rooms, ServerReport, StepRow,
    TimelineRow,
};
pub use html::html;
pub use table::table;
