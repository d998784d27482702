//! One integration-test binary (link time on 2 cores): each area is a module.
mod agent;
mod boot;
mod inventory;
mod lab;
mod model;
mod store;
