//! One integration-test binary (link time on 2 cores): each area is a module.
mod agent;
mod boot;
mod campaign;
mod console;
mod demo;
mod inventory;
mod lab;
mod layout;
mod mcast;
mod model;
mod region;
mod server;
mod store;
