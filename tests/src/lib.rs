pub mod demo;
pub mod events;
pub mod harness;
pub mod sim;
