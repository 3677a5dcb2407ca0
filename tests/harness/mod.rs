#![allow(dead_code)]
pub mod schema;
