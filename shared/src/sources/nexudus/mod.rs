//! Nexudus: what a webhook names ([`webhook`]) and means ([`source`]), with the rules that turn
//! its records into windows ([`rules`], [`entitlements`]), teams ([`teams`]), listings for a
//! resync ([`listing`]), REST client ([`client`]) and its call budget ([`limits`]), reads shared
//! by concurrent refreshes ([`reads`], [`coalesce`]) and entities ([`dto`]).

pub mod client;
pub mod coalesce;
pub mod dto;
pub mod entitlements;
pub mod limits;
mod listing;
mod reads;
mod refresh;
pub mod rules;
pub mod source;
mod teams;
pub mod webhook;

pub use client::NexudusClient;
pub use source::NexudusSource;
