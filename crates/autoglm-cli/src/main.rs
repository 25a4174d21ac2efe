//! The `autoglm` binary.
fn main() {}
