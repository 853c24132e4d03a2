//! Results store (see issue: bench).
