//! Filter Manager simulator (placeholder).
