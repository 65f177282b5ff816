//! TODO: module validation (being written).
