//! Stage 0 (in progress).
