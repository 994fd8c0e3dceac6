//! Requests on the wire: the request and its body, the HTTP agent, proxies and retries.

pub(crate) mod base64;
pub(crate) mod body;
pub(crate) mod http;
pub(crate) mod key;
pub(crate) mod proxy;
pub(crate) mod request;
pub(crate) mod retry;
