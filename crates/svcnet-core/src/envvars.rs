//! TODO: module envvars (being written).
