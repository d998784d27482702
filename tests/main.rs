//! One integration-test binary (link time on 2 cores): each area is a module.
mod inventory;
mod model;
mod store;
mod boot;
mod lab;
mod mcast;
