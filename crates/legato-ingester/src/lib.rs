//! legato-ingester
