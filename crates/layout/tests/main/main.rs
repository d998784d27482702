//! The layout crate's one integration-test binary: real file systems made by the real tools.

mod disk;
mod ext;
mod fat;
mod props;
mod resize;
mod swap;
mod table;
mod util;
