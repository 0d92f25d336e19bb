//! ISO 9564-1 PIN blocks (to be written).
