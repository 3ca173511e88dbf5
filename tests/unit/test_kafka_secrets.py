"""The SASL password comes from the config, the environment or a file, never argv; a
password file is read when a client is made and a bad one is named in the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.bus import load_settings, producer_kwargs
from exchange.errors import InputError

BASE = {"bootstrap_servers": "127.0.0.1:9093", "security_protocol": "SASL_SSL",
        "sasl_username": "FR"}  # fmt: skip


def test_the_password_is_read_from_its_file(tmp_path: Path) -> None:
    """The first line of sasl_password_file is the password."""
    secret = tmp_path / "fr.password"
    secret.write_text("s3cret\nignored\n")
    settings = load_settings({**BASE, "sasl_password_file": str(secret)})
    assert producer_kwargs(settings)["sasl_plain_password"] == "s3cret"
    assert "s3cret" not in repr(settings)


def test_a_password_and_a_password_file_together_are_refused(tmp_path: Path) -> None:
    """Two sources of one secret: refused, naming the field."""
    secret = tmp_path / "fr.password"
    secret.write_text("s3cret\n")
    with pytest.raises(InputError) as caught:
        load_settings({**BASE, "sasl_password": "x", "sasl_password_file": str(secret)})
    assert caught.value.problems[0][0] == "sasl_password_file"


def test_a_missing_or_empty_password_file_is_named(tmp_path: Path) -> None:
    """No such file: refused when loading; an empty one: refused when a client is made."""
    with pytest.raises(InputError) as caught:
        load_settings({**BASE, "sasl_password_file": str(tmp_path / "none")})
    assert caught.value.problems[0][0] == "sasl_password_file"
    empty = tmp_path / "empty"
    empty.write_text("\n")
    settings = load_settings({**BASE, "sasl_password_file": str(empty)})
    with pytest.raises(InputError) as caught:
        producer_kwargs(settings)
    assert caught.value.problems[0][0] == "sasl_password_file"
