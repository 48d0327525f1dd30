//! covenant-net (placeholder: see DESIGN.md)
