//! TODO: module alloc (being written).
