//! Fuzzes the payload decoder. Byte 0 of each input picks the mode: even = decode the bytes as
//! they are (exercises framing, limits and the signature check); odd = frame and sign the rest
//! first so that the table and body validation behind the signature is reached. Any accepted
//! payload must re-encode and decode to the same value. See covenant_codec::fuzzing.
#![no_main]

use std::sync::OnceLock;

use covenant_codec::fuzzing::{fuzz_decode, fuzz_layout};
use covenant_codec::ModelLayout;
use libfuzzer_sys::fuzz_target;

static LAYOUT: OnceLock<ModelLayout> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let layout = LAYOUT.get_or_init(fuzz_layout);
    fuzz_decode(layout, data);
});
