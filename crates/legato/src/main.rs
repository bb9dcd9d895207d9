//! legato
fn main() {}
