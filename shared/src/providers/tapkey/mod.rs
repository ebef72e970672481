//! Tapkey: a thin typed client of the Access Management Web API ([`client`]) and the
//! [`Provider`](crate::providers::Provider) built on it ([`provider`]): one grant per
//! (contact, bound lock, window), created exactly once.

pub mod client;
pub mod dto;
pub mod provider;

pub use client::{TapkeyClient, TapkeyConfig};
pub use provider::TapkeyProvider;
