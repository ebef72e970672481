//! Salto KS: a thin typed client of the Connect API ([`client`]) and the
//! [`Provider`](crate::providers::Provider) built on it ([`provider`]): site users (both ids
//! stored) and access-group memberships, changed with one `PATCH` per group, which concurrent
//! changes of the group share ([`batch`]).

pub mod batch;
pub mod client;
pub mod dto;
pub mod provider;

pub use client::{SaltoClient, SaltoConfig};
pub use provider::SaltoProvider;
