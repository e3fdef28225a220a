use std::convert::Infallible;

use crate::{CensusError, Family, StateSet};

/// Never constructed off Linux.
#[derive(Debug)]
pub(crate) struct DiagSocket {
    never: Infallible,
}

impl DiagSocket {
    pub(crate) fn open() -> Result<Self, CensusError> {
        Err(CensusError::unsupported("netlink sock_diag"))
    }

    pub(crate) fn send_dump(
        &mut self,
        _family: Option<Family>,
        _states: StateSet,
        _ext: crate::netlink::Extensions,
        _bytecode: Option<&[u8]>,
        _step: &'static str,
    ) -> Result<u32, CensusError> {
        match self.never {}
    }

    pub(crate) fn recv(&self, _buf: &mut [u8], _step: &'static str) -> Result<usize, CensusError> {
        match self.never {}
    }
}

pub(crate) fn nofile_limit() -> Result<(Option<u64>, Option<u64>), CensusError> {
    Err(CensusError::unsupported("getrlimit(RLIMIT_NOFILE)"))
}

pub(crate) const SUPPORTED: bool = false;

/// No thread clock read off Linux.
pub(crate) fn thread_cpu_time() -> Option<std::time::Duration> {
    None
}
