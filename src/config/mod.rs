//! The berth.yaml model, its JSON Schema, and validation.
