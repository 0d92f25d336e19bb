//! The order side: what an issuer sends and how the bureau reads it.
//!
//! - [`product`]: the order profile (`pmp-product-1`, `docs/product.md`): the issuer layout,
//!   the file and field encryption, the keys, and per field its check, XOF attribute and DKep.
//! - [`issuer`]: streaming readers for the issuer layouts (delimited, fixed-width, XML), one
//!   record at a time through wiped buffers.
//! - [`validate`]: the field checks (PAN and Luhn, expiry, service code, name) and the reject
//!   reasons.
//!
//! This folder depends on the primitives and the PIN block formats only; it never touches a
//! key. The import pipeline ([`crate::import`]) puts it together with the HSM.

pub mod encoding;
pub mod issuer;
pub mod product;
pub mod validate;
