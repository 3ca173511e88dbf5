"""Bearer tokens of the HTTP connectors: hashed in config, checked in constant time."""

from __future__ import annotations

import pytest

from connectors.tokens import Role, TokenTable, hash_token, new_token
from exchange.errors import InputError


def _table(**overrides: object) -> tuple[str, TokenTable]:
    token, digest = new_token()
    entry = {"name": "bank-x", "sha256": digest, "roles": ["report"], **overrides}
    return token, TokenTable.from_options([entry])


def test_a_configured_token_authenticates_as_its_grant() -> None:
    token, table = _table(categories=["IDENTITY_FRAUD"])
    grant = table.authenticate(f"Bearer {token}")
    assert grant is not None
    assert grant.name == "bank-x"
    assert grant.may(Role.REPORT)
    assert not grant.may(Role.SUBMIT)
    assert grant.category_allowed("IDENTITY_FRAUD")
    assert not grant.category_allowed("CHILD_SEXUAL_ABUSE_MATERIAL")


def test_a_wrong_missing_or_non_bearer_token_authenticates_as_nobody() -> None:
    token, table = _table()
    assert table.authenticate(f"Bearer {token}x") is None
    assert table.authenticate(None) is None
    assert table.authenticate("") is None
    assert table.authenticate(f"Basic {token}") is None
    assert table.authenticate("Bearer ") is None


def test_the_config_holds_only_the_tokens_digest() -> None:
    token, digest = new_token()
    assert digest == hash_token(token)
    assert token not in digest
    assert len(digest) == 64


def test_reading_rights_stop_at_the_grants_tlp_and_handling_code() -> None:
    _, table = _table(roles=["read"], max_tlp="AMBER", max_handling_code="H1")
    (grant,) = table._by_digest.values()
    assert grant.may_read("GREEN", "H0", "IDENTITY_FRAUD")
    assert grant.may_read("AMBER", "H1", None)
    assert not grant.may_read("AMBER_STRICT", "H0", "IDENTITY_FRAUD")
    assert not grant.may_read("RED", "H0", "IDENTITY_FRAUD")
    assert not grant.may_read("GREEN", "H2", "IDENTITY_FRAUD")
    assert not grant.may_read("PURPLE", "H0", "IDENTITY_FRAUD")


def test_a_token_without_the_read_role_reads_nothing() -> None:
    _, table = _table(roles=["submit"], max_tlp="RED", max_handling_code="H3")
    (grant,) = table._by_digest.values()
    assert not grant.may_read("CLEAR", "H0", None)


def test_every_problem_of_a_bad_token_list_is_named() -> None:
    with pytest.raises(InputError) as caught:
        TokenTable.from_options(
            [
                {"name": "ok", "sha256": "ab" * 32, "roles": ["read"]},
                {"name": "", "sha256": "XYZ", "roles": ["admin"], "max_tlp": "PINK"},
                {"name": "ok", "sha256": "ab" * 32, "roles": ["read"]},
            ]
        )
    fields = [f for f, _ in caught.value.problems]
    assert "options.tokens[1].name" in fields
    assert "options.tokens[1].sha256" in fields
    assert "options.tokens[1].roles" in fields
    assert "options.tokens[1].max_tlp" in fields
    assert "options.tokens" in fields  # duplicate name and token


def test_tokens_must_be_a_list() -> None:
    with pytest.raises(InputError, match="list of tokens"):
        TokenTable.from_options({"name": "x"})
