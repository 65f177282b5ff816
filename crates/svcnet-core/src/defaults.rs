//! TODO: module defaults (being written).
