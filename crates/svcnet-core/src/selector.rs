//! TODO: module selector (being written).
