//! Portier's engine: one crate shared by `portier serve` and the Lambda functions.
//!
//! Modules follow the data flow, in this order: `ingress` verifies a webhook and `sources`
//! say whom it concerns, `queue` carries the work, the `worker` has the source read, `plan`
//! computes desired access (pure), `reconcile` applies it through `providers`, recording
//! everything in the `store`. Then what keeps access in line over time, the two runtimes
//! (`serve`, `lambda`) with the operator's views, and what every layer stands on.

pub mod ingress;
pub mod plan;
pub mod providers;
pub mod queue;
pub mod reconcile;
pub mod sources;
pub mod store;
pub mod worker;

// What keeps it in line over time: timers, resyncs, presence, changed configuration.
pub mod changes;
pub mod presence;
pub mod resync;
pub mod tick;

// The two runtimes and the operator's views of them.
pub mod console;
pub mod explain;
pub mod lambda;
pub mod serve;
pub mod status;

// What every layer stands on.
pub mod aws;
pub mod clock;
pub mod config;
pub mod error;
pub mod http;
pub mod http_server;
pub mod localtime;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod paging;
pub mod retry;
pub mod secrets;
pub mod sqlite_file;
pub mod table;
pub mod telemetry;
pub mod tenants;
