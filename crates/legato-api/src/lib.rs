//! legato-api
