//! Words stored in text columns (statuses, outcomes, origins, kinds, rules). A leaf module: each
//! such enum reads back exactly, and a word this code does not know fails the read instead of
//! passing for another value.

/// A stored value this code does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} '{value}' in the database")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// Declares an enum stored as a word: `ALL` (in the order it is shown), `as_str`, `Display`,
/// and `TryFrom<String>` for `#[diesel(deserialize_as = String)]` that refuses unknown words.
/// Callers give the derives; `Copy` and `PartialEq` are needed.
macro_rules! stored_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $($(#[$variant_meta:meta])* $variant:ident = $word:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl $name {
            pub const ALL: [$name; [$($word),+].len()] = [$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::stored::UnknownValue;

            fn try_from(value: String) -> Result<Self, $crate::stored::UnknownValue> {
                $name::ALL
                    .into_iter()
                    .find(|v| v.as_str() == value)
                    .ok_or($crate::stored::UnknownValue { what: $what, value })
            }
        }
    };
}
pub(crate) use stored_enum;

#[cfg(test)]
mod tests {
    stored_enum! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Colour as "colour" {
            Red = "red",
            DarkBlue = "dark_blue",
        }
    }

    #[test]
    fn words_round_trip_and_unknown_words_are_refused() {
        for colour in Colour::ALL {
            assert_eq!(Colour::try_from(colour.to_string()).ok(), Some(colour));
        }
        assert_eq!(Colour::DarkBlue.as_str(), "dark_blue");
        let refused = Colour::try_from("green".to_string()).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "unknown colour 'green' in the database"
        );
    }
}
