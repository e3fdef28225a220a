//! Census benchmark.

fn main() {}
