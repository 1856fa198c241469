//! `idna`'s Unicode back end over spkey-unicode's tables: the API of
//! crates.io's `idna_adapter` 1.2 (ICU4X), which this crate replaces
//! through the workspace's `[patch]`. Every answer is spkey-unicode's,
//! held equal to ICU4X's for every character by that crate's tests; this
//! crate only gives the answers the types `idna` expects.

use spkey_unicode::{bidi, joining};

/// Joining types as masks, for comparing with several at once.
const fn joining_mask(value: u8) -> JoiningTypeMask {
    JoiningTypeMask(1 << value)
}

/// Bidi classes as masks, for comparing with several at once.
const fn bidi_mask(values: &[u8]) -> BidiClassMask {
    let (mut mask, mut i) = (0, 0);
    while i < values.len() {
        mask |= 1 << values[i];
        i += 1;
    }
    BidiClassMask(mask)
}

/// Left or dual joining.
pub const LEFT_OR_DUAL_JOINING_MASK: JoiningTypeMask =
    JoiningTypeMask(joining_mask(joining::L).0 | joining_mask(joining::D).0);

/// Right or dual joining.
pub const RIGHT_OR_DUAL_JOINING_MASK: JoiningTypeMask =
    JoiningTypeMask(joining_mask(joining::R).0 | joining_mask(joining::D).0);

/// The classes that make a domain a bidi domain.
pub const RTL_MASK: BidiClassMask = bidi_mask(&[bidi::R, bidi::AL, bidi::AN]);

/// The classes allowed first in a label of a bidi domain.
pub const FIRST_BC_MASK: BidiClassMask = bidi_mask(&[bidi::L, bidi::R, bidi::AL]);

/// The classes allowed last (before nonspacing marks) in an LTR label of a
/// bidi domain.
pub const LAST_LTR_MASK: BidiClassMask = bidi_mask(&[bidi::L, bidi::EN]);

/// The classes allowed last (before nonspacing marks) in an RTL label of a
/// bidi domain.
pub const LAST_RTL_MASK: BidiClassMask = bidi_mask(&[bidi::R, bidi::AL, bidi::EN, bidi::AN]);

/// The classes allowed inside an LTR label of a bidi domain.
pub const MIDDLE_LTR_MASK: BidiClassMask = bidi_mask(&[
    bidi::L,
    bidi::EN,
    bidi::ES,
    bidi::CS,
    bidi::ET,
    bidi::ON,
    bidi::BN,
    bidi::NSM,
]);

/// The classes allowed inside an RTL label of a bidi domain.
pub const MIDDLE_RTL_MASK: BidiClassMask = bidi_mask(&[
    bidi::R,
    bidi::AL,
    bidi::AN,
    bidi::EN,
    bidi::ES,
    bidi::CS,
    bidi::ET,
    bidi::ON,
    bidi::BN,
    bidi::NSM,
]);

/// A Joining_Type value.
#[derive(Clone, Copy)]
pub struct JoiningType(u8);

impl JoiningType {
    /// This type as a mask.
    #[inline]
    pub fn to_mask(self) -> JoiningTypeMask {
        joining_mask(self.0)
    }

    /// Whether this is Transparent.
    #[inline]
    pub fn is_transparent(self) -> bool {
        self.0 == joining::T
    }
}

/// A set of joining types.
#[derive(Clone, Copy)]
pub struct JoiningTypeMask(u32);

impl JoiningTypeMask {
    /// Whether the two sets share a type.
    #[inline]
    pub fn intersects(self, other: JoiningTypeMask) -> bool {
        self.0 & other.0 != 0
    }
}

/// A Bidi_Class value.
#[derive(Clone, Copy)]
pub struct BidiClass(u8);

impl BidiClass {
    /// This class as a mask.
    #[inline]
    pub fn to_mask(self) -> BidiClassMask {
        bidi_mask(&[self.0])
    }

    /// Whether this is Left_To_Right.
    #[inline]
    pub fn is_ltr(self) -> bool {
        self.0 == bidi::L
    }

    /// Whether this is Nonspacing_Mark.
    #[inline]
    pub fn is_nonspacing_mark(self) -> bool {
        self.0 == bidi::NSM
    }

    /// Whether this is European_Number.
    #[inline]
    pub fn is_european_number(self) -> bool {
        self.0 == bidi::EN
    }

    /// Whether this is Arabic_Number.
    #[inline]
    pub fn is_arabic_number(self) -> bool {
        self.0 == bidi::AN
    }
}

/// A set of bidi classes.
#[derive(Clone, Copy)]
pub struct BidiClassMask(u32);

impl BidiClassMask {
    /// Whether the two sets share a class.
    #[inline]
    pub fn intersects(self, other: BidiClassMask) -> bool {
        self.0 & other.0 != 0
    }
}

/// The back end `idna` calls.
#[derive(Default)]
pub struct Adapter;

impl Adapter {
    /// The adapter (its tables are decoded on first use).
    #[inline]
    pub const fn new() -> Self {
        Self
    }

    /// Whether `c`'s Canonical_Combining_Class is Virama.
    #[inline]
    pub fn is_virama(&self, c: char) -> bool {
        spkey_unicode::is_virama(c)
    }

    /// Whether `c`'s General_Category is a mark (Mn, Mc or Me).
    #[inline]
    pub fn is_mark(&self, c: char) -> bool {
        spkey_unicode::category(c) == spkey_unicode::Category::Mark
    }

    /// `c`'s Bidi_Class.
    #[inline]
    pub fn bidi_class(&self, c: char) -> BidiClass {
        BidiClass(spkey_unicode::bidi_class(c))
    }

    /// `c`'s Joining_Type.
    #[inline]
    pub fn joining_type(&self, c: char) -> JoiningType {
        JoiningType(spkey_unicode::joining_type(c))
    }

    /// UTS 46's Map and Normalize steps ([`spkey_unicode::map_normalize`]).
    #[inline]
    pub fn map_normalize<'delegate, I: Iterator<Item = char> + 'delegate>(
        &'delegate self,
        iter: I,
    ) -> impl Iterator<Item = char> + 'delegate {
        spkey_unicode::map_normalize(iter)
    }

    /// UTS 46's NFC and status checks
    /// ([`spkey_unicode::normalize_validate`]).
    #[inline]
    pub fn normalize_validate<'delegate, I: Iterator<Item = char> + 'delegate>(
        &'delegate self,
        iter: I,
    ) -> impl Iterator<Item = char> + 'delegate {
        spkey_unicode::normalize_validate(iter)
    }
}
