//! The adapter's Jobs: a copy of the migration Job as a release ran it,
//! its image pinned by digest, its container running the adapter's
//! request; the response read from its log.

// Part A writes this module: `run` (one request in one Job) and what it
// returns.
