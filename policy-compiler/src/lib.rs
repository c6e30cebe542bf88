//! Policy compiler (see issue 3).
