//! Portier's engine: one crate shared by `portier serve` and the Lambda functions.
//!
//! Modules follow the data flow: `ingress` verifies and enqueues webhooks, `sources` read
//! the space-management systems, `plan` computes desired access (pure), `reconcile` applies
//! it through `providers`, recording everything in the `store`; `queue` carries the work.

pub mod clock;
pub mod error;
pub mod model;
pub mod plan;
pub mod telemetry;
