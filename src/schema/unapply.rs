//! Under the rollback's lock: bring the schema to the target's state (the
//! unapply Job, or the restore of a pre-migration backup), and verify it.

// Part B writes this module.
