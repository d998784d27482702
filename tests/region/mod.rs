//! The region's image repository on a real three-node Garage cluster (issue 18): push, pull,
//! list, resume after kill -9, a site going dark, altered objects, foreign signers, credentials.

mod base_image;
pub(crate) mod cluster;
mod transfer;
