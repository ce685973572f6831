//! Booking logic without IO: the policy and slot grid, the truthfulness guard, and the
//! deterministic language understanding used by the offline agent.

pub mod guard;
pub mod outbox;
pub mod parse;
pub mod pii;
pub mod policy;
pub mod retrieval;
pub mod temporal;
