//! covenant-data (placeholder: see DESIGN.md)
