//! covenant-codec (placeholder: see DESIGN.md)
