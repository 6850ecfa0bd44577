//! PostgreSQL schema (lands with the PostgreSQL issue).
