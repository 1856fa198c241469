//! The envelope decoder on arbitrary bytes — as they are, and with a valid
//! checksum appended so the fuzzer reaches the structure behind the CRC.
//! Decoding must never panic, and whatever decodes must re-encode to bytes
//! that decode to the same event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spkey_store::codec;

fuzz_target!(|data: &[u8]| {
    check(data);
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&crc32(data).to_le_bytes());
    check(&sealed);
});

fn check(bytes: &[u8]) {
    if let Ok(event) = codec::decode(bytes) {
        let again = codec::encode(&event);
        assert_eq!(codec::decode(&again).as_ref(), Ok(&event));
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(bytes);
    hasher.finalize()
}
