//! Brivo: a thin typed client of the Access API ([`client`]) and the
//! [`Provider`](crate::providers::Provider) built on it ([`provider`]): users found by
//! `externalId`, group memberships changed with one `POST /users/{id}/groups` per reconcile,
//! Mobile Pass invitations.

pub mod client;
pub mod provider;

pub use client::{BrivoClient, BrivoConfig};
pub use provider::BrivoProvider;
