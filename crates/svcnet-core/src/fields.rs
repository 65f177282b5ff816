//! TODO: module fields (being written).
