//! Nexudus: webhook meaning ([`source`]), REST client ([`client`]) and its call budget
//! ([`limits`]), reads shared by concurrent refreshes ([`coalesce`]) and entities ([`dto`]).

pub mod client;
pub mod coalesce;
pub mod dto;
pub mod limits;
pub mod source;

pub use client::NexudusClient;
pub use source::NexudusSource;
