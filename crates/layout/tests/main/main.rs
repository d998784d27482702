//! The layout crate's one integration-test binary: real file systems made by the real tools.

mod ext;
mod fat;
mod swap;
mod util;
