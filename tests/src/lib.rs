pub mod aws;
pub mod burst;
pub mod demo;
pub mod events;
pub mod groups;
pub mod harness;
pub mod kinnovis_app;
pub mod sim;
