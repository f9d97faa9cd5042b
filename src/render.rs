//! Rendering an environment (kustomize through kubectl, or helm) and pinning images in memory.
