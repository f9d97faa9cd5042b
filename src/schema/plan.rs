//! A rollback's schema plan, computed before anything changes: the live
//! state, the target's, the steps between them from the newer release's
//! image, and whether any cannot be undone.

// Part B writes this module.
