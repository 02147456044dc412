//! fsense minifilter (placeholder until the driver lands).
#![no_std]
