//! TODO: module table (being written).
