//! TR-31 / ANSI X9.143 key blocks (to be written).
