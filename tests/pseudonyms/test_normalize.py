"""Handle normalization: every spelling of one handle meets, different handles do not."""

from __future__ import annotations

import pytest

from exchange.pseudonyms.normalize import HandleError, normalize_handle, normalize_platform


@pytest.mark.parametrize(
    "spelling",
    [
        "dark_seller42",
        "Dark_Seller42",
        "DARK_SELLER42",
        "@dark_seller42",
        "  @dark_seller42  ",
        "\uff20\uff24\uff41\uff52\uff4b_seller42",  # full-width @, D, a, r, k
        "d\u200bark_seller42",  # a zero-width space inside
        "\u0501\u0430rk_s\u0435ll\u0435r42",  # Cyrillic komi de, a and ie
    ],
)
def test_every_spelling_of_a_telegram_handle_normalizes_to_one_form(spelling: str) -> None:
    """NFKC, invisible characters, case, the leading @ and confusables fold away."""
    assert normalize_handle("Telegram", spelling) == "dark_seller42"


def test_case_folding_is_full_unicode_folding_not_lower() -> None:
    """German sharp s folds to ss, as casefold() does."""
    assert normalize_handle("forum", "Stra\u00dfe") == normalize_handle("forum", "STRASSE")


def test_the_at_sign_is_kept_where_the_platform_does_not_prefix_names_with_it() -> None:
    """On an unknown platform a leading @ is part of the name."""
    assert normalize_handle("someforum", "@bob") == "@bob"
    assert normalize_handle("twitter", "@bob") == "bob"


def test_reddit_prefix_and_gmail_dots_are_platform_rules() -> None:
    """u/ on Reddit, dots in a Gmail local part, are not part of the name."""
    assert normalize_handle("Reddit", "/u/Spez") == normalize_handle("reddit", "spez")
    assert normalize_handle("gmail", "J.Doe@gmail.com") == "jdoe@gmail.com"


def test_different_handles_stay_different() -> None:
    """Folding does not merge handles that differ in a real letter or digit."""
    assert normalize_handle("x", "seller42") != normalize_handle("x", "seller43")


@pytest.mark.parametrize(
    ("handle", "reason"),
    [
        ("", "empty"),
        ("@", "empty"),
        ("\u200b", "empty"),
        ("two words", "white space"),
        ("bad\x07bell", "control"),
        ("x" * 300, "longer than"),
    ],
)
def test_handles_that_cannot_be_a_handle_are_refused_with_a_reason(
    handle: str, reason: str
) -> None:
    """Empty, inner white space, control characters, too long: HandleError naming why."""
    with pytest.raises(HandleError, match=reason):
        normalize_handle("twitter", handle)


def test_platform_names_fold_too() -> None:
    """Platforms are compared case-folded and trimmed; an empty one is refused."""
    assert normalize_platform("  TeleGram ") == "telegram"
    with pytest.raises(HandleError):
        normalize_platform("  ")
