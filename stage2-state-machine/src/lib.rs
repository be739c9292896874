//! Stage 2 (in progress).
