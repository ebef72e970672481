//! Brivo: a thin typed client of the Access API ([`client`]) and the
//! [`Provider`](crate::providers::Provider) built on it ([`provider`]): users found by
//! `externalId`, group memberships changed one `PUT`/`DELETE /groups/{g}/users/{u}` per group,
//! Mobile Pass invitations.

pub mod client;
pub mod dto;
mod gateway;
pub mod provider;

pub use client::{BrivoClient, BrivoConfig};
pub use provider::BrivoProvider;
