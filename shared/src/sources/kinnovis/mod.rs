//! Kinnovis (self-storage): what a webhook names ([`webhook`]) and means ([`source`]), export client ([`client`]) and the
//! contract's entities ([`dto`]).
//!
//! Kinnovis publishes no webhook API; Portier defines one (`reference/source-systems.md` §6)
//! and keeps it inside this folder, so a vendor contract can replace it without touching the
//! engine.

pub mod client;
pub mod dto;
pub mod source;
pub mod webhook;

pub use client::KinnovisClient;
pub use source::KinnovisSource;
