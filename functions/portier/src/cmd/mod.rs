//! One module per command; `main` parses the command line and hands over.

pub mod config;
pub mod dead_letters;
pub mod drift;
pub mod explain;
pub mod mapping;
pub mod resync;
pub mod send;
pub mod serve;
pub mod status;
