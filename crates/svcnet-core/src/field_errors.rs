//! TODO: module field_errors (being written).
