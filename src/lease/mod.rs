//! Lease tracking for any connection pool (work in progress).
