//! TODO: module names (being written).
