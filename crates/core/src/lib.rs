//! covenant-core (placeholder: see DESIGN.md)
