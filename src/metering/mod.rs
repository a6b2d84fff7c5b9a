//! Metering: what a model call costs and what it is billed. This module holds the
//! pure money rules over integer nano-dollars; storage of usage records and the
//! credit ledger sit behind the store like every other table.

pub mod ledger;
pub mod meter;
pub mod pricing;
pub mod usage;
