//! TODO: module endpoints (being written).
