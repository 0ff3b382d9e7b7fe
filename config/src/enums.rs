//! Case-insensitive enums.
//!
//! AIO's schema spells enum values in PascalCase (`ClusterIp`, `ReadWrite`) but its own docs
//! and manifests also use `clusterIP`, `loadBalancer`, `readwrite`, `pattern`. Rather than
//! listing every spelling as a serde alias, each enum declares its canonical spellings once
//! (with [`ci_enum!`]) and [`deserialize`] matches them ignoring ASCII case. A value that
//! matches nothing is an error that lists the allowed values.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// An enum whose YAML spelling is matched without regard to letter case.
pub trait CaseInsensitive: Sized + Copy + 'static {
    /// What the value is, for error messages (`"protocol"`).
    const WHAT: &'static str;
    /// The canonical spelling of every variant, in the order shown in error messages.
    const VARIANTS: &'static [(&'static str, Self)];

    /// Finds the variant spelled `text`, ignoring ASCII case.
    fn from_str_ci(text: &str) -> Option<Self> {
        Self::VARIANTS
            .iter()
            .find(|(spelling, _)| spelling.eq_ignore_ascii_case(text))
            .map(|(_, value)| *value)
    }

    /// `A, B, C`: the canonical spellings, for error messages.
    fn allowed() -> String {
        let names: Vec<&str> = Self::VARIANTS.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }
}

/// Deserializes a [`CaseInsensitive`] enum from a YAML string.
pub(crate) fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: CaseInsensitive,
{
    struct CiVisitor<T>(PhantomData<T>);

    impl<T: CaseInsensitive> Visitor<'_> for CiVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a {}: one of {}", T::WHAT, T::allowed())
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            T::from_str_ci(text).ok_or_else(|| {
                E::custom(format_args!(
                    "unknown {} `{}`; allowed: {} (any letter case)",
                    T::WHAT,
                    text,
                    T::allowed()
                ))
            })
        }
    }

    deserializer.deserialize_str(CiVisitor(PhantomData))
}

/// Declares an enum with its canonical YAML spellings, matched case-insensitively.
///
/// Generates the enum (with `Debug, Clone, Copy, PartialEq, Eq, Hash`), `as_str()`,
/// `Display` (the canonical spelling), [`CaseInsensitive`] and `Deserialize`.
macro_rules! ci_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $spelling:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $crate::enums::CaseInsensitive for $name {
            const WHAT: &'static str = $what;
            const VARIANTS: &'static [(&'static str, Self)] = &[ $( ($spelling, $name::$variant) ),+ ];
        }

        impl $name {
            /// The canonical spelling, as shown in the docs and in error messages.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $spelling ),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $crate::enums::deserialize(deserializer)
            }
        }
    };
}

pub(crate) use ci_enum;

#[cfg(test)]
mod tests {
    use super::CaseInsensitive;

    ci_enum! {
        enum Colour("colour") { Red = "Red", DarkBlue = "DarkBlue" }
    }

    #[test]
    fn matches_any_letter_case() {
        for text in ["DarkBlue", "darkblue", "DARKBLUE", "darkBlue"] {
            let value: Colour = serde_norway::from_str(text).unwrap();
            assert_eq!(value, Colour::DarkBlue);
        }
        assert_eq!(Colour::from_str_ci("RED"), Some(Colour::Red));
        assert_eq!(Colour::DarkBlue.to_string(), "DarkBlue");
    }

    #[test]
    fn unknown_value_lists_the_allowed_ones() {
        let err = serde_norway::from_str::<Colour>("green")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown colour `green`"), "{err}");
        assert!(err.contains("allowed: Red, DarkBlue"), "{err}");
    }

    #[test]
    fn non_string_is_rejected_with_the_allowed_values() {
        let err = serde_norway::from_str::<Colour>("[1]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("one of Red, DarkBlue"), "{err}");
    }
}
