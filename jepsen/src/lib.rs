//! setpoint-jepsen's library: the Jepsen-style verifier. `history` records what clients and
//! the nemesis did; `checker` decides from a history alone whether it was allowed; `proxy`
//! puts a fault injector on every peer link; `report` draws what happened.

pub mod checker;
pub mod history;
pub mod proxy;
pub mod report;
