//! Who a request acts for: authentik's `TokenAuthentication` (`authentik/api/authentication.py`,
//! 2025.12 and later) over the keys of `[[api.tokens]]`. Pure: the header in, a principal or
//! the 403 it earns out.

use crate::config::ResolvedToken;
use subtle::ConstantTimeEq;

/// The user a request acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The authentik user pk the token was configured with.
    pub user: i64,
    /// May manage policies, rules and bindings and sees every notification.
    pub admin: bool,
}

/// Why a request is refused with 403, each with authentik's `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header, or one authentik does not read as a bearer token (another
    /// scheme, no credentials): DRF's `NotAuthenticated`.
    NotProvided,
    /// A bearer key no token has.
    Invalid,
    /// Authenticated, but the token may not do this.
    Permission,
}

impl Denied {
    pub fn detail(self) -> &'static str {
        match self {
            Denied::NotProvided => "Authentication credentials were not provided.",
            Denied::Invalid => "Token invalid/expired",
            Denied::Permission => "You do not have permission to perform this action.",
        }
    }
}

/// The configured tokens.
pub struct Tokens {
    tokens: Vec<ResolvedToken>,
}

impl Tokens {
    pub fn new(tokens: Vec<ResolvedToken>) -> Self {
        Self { tokens }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// authentik's `validate_auth` then the key lookup. Since authentik 2025.12 a scheme other
    /// than `Bearer` is not an error of its own: the request is simply not authenticated
    /// (before, it was "Unsupported authentication type").
    pub fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, Denied> {
        let Some(raw) = header else {
            return Err(Denied::NotProvided);
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(Denied::NotProvided);
        };
        let text = text.trim();
        let Some((scheme, key)) = text.split_once(' ') else {
            return Err(Denied::NotProvided);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Denied::NotProvided);
        }
        // Every key is compared, in constant time per key, so the time taken does not tell
        // which token (or how much of one) matched. As `hmac.compare_digest`, a comparison
        // with a key of another length ends early: lengths are not secret here.
        let mut found: Option<Principal> = None;
        for t in &self.tokens {
            if bool::from(t.key.as_bytes().ct_eq(key.as_bytes())) {
                found = Some(Principal {
                    user: t.user,
                    admin: t.admin,
                });
            }
        }
        found.ok_or(Denied::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(vec![
            ResolvedToken {
                key: "admin-key".into(),
                user: 1,
                admin: true,
            },
            ResolvedToken {
                key: "user-key".into(),
                user: 7,
                admin: false,
            },
        ])
    }

    #[test]
    fn bearer_keys_authenticate_as_their_user() {
        let t = tokens();
        assert_eq!(
            t.authenticate(Some(b"Bearer admin-key")),
            Ok(Principal {
                user: 1,
                admin: true
            })
        );
        assert_eq!(
            t.authenticate(Some(b"  bearer user-key ")),
            Ok(Principal {
                user: 7,
                admin: false
            }),
            "the scheme is case-insensitive and the header trimmed, as authentik"
        );
    }

    #[test]
    fn refusals_have_authentiks_shapes() {
        let t = tokens();
        // authentik's test_auth.py: test_invalid_type, test_invalid_empty, test_invalid_no_token.
        for h in [
            None,
            Some(&b""[..]),
            Some(b"Bearer "),
            Some(b"Bearer"),
            Some(b"foo bar"),
            Some(b"Basic dXNlcjpwYXNz"),
            Some(b"Token admin-key"),
            Some(b"\xff\xfe"),
        ] {
            assert_eq!(t.authenticate(h), Err(Denied::NotProvided), "{h:?}");
        }
        for h in [
            &b"Bearer nope"[..],
            b"Bearer admin-ke",
            b"Bearer admin-key2",
            b"Bearer  admin-key",
        ] {
            assert_eq!(t.authenticate(Some(h)), Err(Denied::Invalid), "{h:?}");
        }
        assert_eq!(
            Denied::NotProvided.detail(),
            "Authentication credentials were not provided."
        );
        assert_eq!(Denied::Invalid.detail(), "Token invalid/expired");
    }
}
