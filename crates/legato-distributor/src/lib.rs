//! legato-distributor
