//! `uniffi-bindgen generate --library <lib> --language kotlin|swift|python`,
//! from the same UniFFI version as the library (a mismatch is refused at
//! load time by the generated code's checksums).

fn main() {
    uniffi::uniffi_bindgen_main()
}
