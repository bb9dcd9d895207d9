pub mod internal;
pub mod remote;
pub mod ring_page;
