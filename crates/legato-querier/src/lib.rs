//! legato-querier
