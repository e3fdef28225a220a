//! reqwest with the crate's hygiene ([`ReqwestHygiene`]): the socket policy as reqwest's own
//! settings, a pool idle timeout below the server's keep-alive, leases on its responses that
//! name the line that sent them, and census attribution of its connections.

mod connect;
mod hygiene;
mod response;

pub use self::{
    connect::{ReqwestConnect, ReqwestConnectFuture, ReqwestConnectLayer, ReqwestUpstream},
    hygiene::ReqwestHygiene,
    response::{SendTracked, TrackedResponse},
};
