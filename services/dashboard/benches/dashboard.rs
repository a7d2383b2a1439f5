//! Dashboard benchmark (filled in below).
fn main() {}
