//! Nexudus: what a webhook names ([`webhook`]) and means ([`source`]), REST client ([`client`]), reads shared by concurrent
//! refreshes ([`coalesce`]) and entities ([`dto`]).

pub mod client;
pub mod coalesce;
pub mod dto;
pub mod source;
pub mod webhook;

pub use client::NexudusClient;
pub use source::NexudusSource;
