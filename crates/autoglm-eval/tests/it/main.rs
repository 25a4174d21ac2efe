//! Integration tests of autoglm-eval (one binary, several areas).
mod fixture;
mod golden;
mod props;
mod util;
