//! The fleet side of staged rollout (issue 29): the protocol agents and the rollout controller
//! speak over NATS ([`protocol`], parsers of network input, no feature needed so the fuzz
//! target builds it) and the controller's gate arithmetic ([`gate`]). The NATS client code
//! lives in the `fsense` crate (`fsense::fleet`), next to the sink whose connection options it
//! reuses.

#[cfg(feature = "distribution")]
pub mod gate;
pub mod protocol;
