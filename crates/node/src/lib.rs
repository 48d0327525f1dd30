//! covenant-node (placeholder: see DESIGN.md)
