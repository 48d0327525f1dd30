//! covenant-model (placeholder: see DESIGN.md)
