//! Rollout verdicts: one small type per workload kind answering "done? doomed? why?".
