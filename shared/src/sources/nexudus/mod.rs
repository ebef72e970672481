//! Nexudus: webhook meaning ([`source`]), REST client ([`client`]) and entities ([`dto`]).

pub mod client;
pub mod dto;
pub mod source;

pub use client::NexudusClient;
pub use source::NexudusSource;
