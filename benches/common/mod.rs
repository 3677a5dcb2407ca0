//! Code the benchmarks share. Each bench uses only part of it.
#![allow(dead_code)]

pub mod rng;
