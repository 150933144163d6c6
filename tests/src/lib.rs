//! Shared test helpers: fixture reader, tolerances, backend macro.
