//! Portier's engine: one crate shared by `portier serve` and the Lambda functions.
//!
//! Modules follow the data flow: `ingress` verifies and enqueues webhooks, `sources` read
//! the space-management systems, `plan` computes desired access (pure), `reconcile` applies
//! it through `providers`, recording everything in the `store`; `queue` carries the work.

pub mod ingress;
pub mod model;
pub mod plan;
pub mod presence;
pub mod providers;
pub mod reconcile;
pub mod resync;
pub mod retry;
pub mod sources;
pub mod worker;

pub mod queue;
pub mod store;

pub mod aws;
pub mod changes;
pub mod clock;
pub mod config;
pub mod console;
pub mod error;
pub mod explain;
pub mod http;
pub mod http_server;
pub mod lambda;
pub mod localtime;
pub mod mapping;
pub mod metrics;
pub mod paging;
pub mod secrets;
pub mod serve;
pub mod sqlite_file;
pub mod status;
pub mod table;
pub mod telemetry;
pub mod tenants;
pub mod tick;
