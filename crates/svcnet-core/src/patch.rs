//! TODO: module patch (being written).
