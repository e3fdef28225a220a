//! Demo of a leaked pool connection caught by the lease tracker (being written).
fn main() {}
