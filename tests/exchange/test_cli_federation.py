"""The key, trust and federation commands of the ``exchange`` console script."""

from __future__ import annotations

import json
import stat
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.errors import Reason, VerificationError
from exchange.ids import NodeId
from exchange.keys import EncryptionKey, SigningKey, key_id_for, load_public_key
from exchange.trust import load_trust_list, root_fingerprint


def _init(tmp_path: Path, *extra: str) -> Path:
    d = tmp_path / "fed"
    assert main(["federation", "init", str(d), "--nodes", "FR,DE,NL", *extra]) == 0
    return d


def test_federation_init_writes_keys_trust_list_and_node_configs(tmp_path: Path) -> None:
    """`federation init` writes root and node keys (private ones 0600), a signed list, configs."""
    d = _init(tmp_path, "--federation", "eu-test", "--bootstrap", "10.0.0.1:9093", "--prefix", "t1")
    assert stat.S_IMODE((d / "root.key").stat().st_mode) == 0o600
    trust = load_trust_list(d / "trust.list")
    assert trust.federation == "eu-test"
    assert trust.root_key_id == key_id_for(load_public_key(d / "root.pub"))
    for node in ("FR", "DE", "NL"):
        nd = d / node
        for name in ("signing.key", "encryption.key"):
            assert stat.S_IMODE((nd / name).stat().st_mode) == 0o600
        member = trust.member(NodeId(node))
        assert member.signing_keys[0].key_id == SigningKey.load(nd / "signing.key").key_id
        assert member.encryption_keys[0].key_id == EncryptionKey.load(nd / "encryption.key").key_id
        config = tomllib.loads((nd / "node.toml").read_text())
        assert config["node_id"] == node
        assert config["keys"] == {
            "signing_key": "signing.key",
            "encryption_key": "encryption.key",
            "trust_list": "../trust.list",
            "root_fingerprint": root_fingerprint(load_public_key(d / "root.pub")),
        }
        assert config["kafka"] == {"bootstrap_servers": "10.0.0.1:9093", "topic_prefix": "t1"}
        assert config["store"]["url"] == "sqlite:///node.db"
        assert (nd / config["keys"]["trust_list"]).resolve() == (d / "trust.list").resolve()


@pytest.mark.parametrize(
    ("nodes", "message"), [("FR,fr", "alpha-2"), ("FR,FR", "twice"), ("", "at least one")]
)
def test_federation_init_refuses_bad_node_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nodes: str, message: str
) -> None:
    """Bad node ids exit 2 with the field and the reason."""
    assert main(["federation", "init", str(tmp_path / "f"), "--nodes", nodes]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "f").exists()


def test_federation_init_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A directory already holding a federation is left alone (exit 2)."""
    d = _init(tmp_path)
    before = (d / "trust.list").read_bytes()
    assert main(["federation", "init", str(d), "--nodes", "FR"]) == 2
    assert "already holds" in capsys.readouterr().err
    assert (d / "trust.list").read_bytes() == before


def test_keys_generate_writes_a_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`keys generate` writes PREFIX.key (0600) and PREFIX.pub and prints the key id."""
    assert main(["keys", "generate", "--kind", "signing", "--out", str(tmp_path / "s")]) == 0
    key = SigningKey.load(tmp_path / "s.key")
    assert key.key_id in capsys.readouterr().out
    assert stat.S_IMODE((tmp_path / "s.key").stat().st_mode) == 0o600
    assert main(["keys", "generate", "--kind", "encryption", "--out", str(tmp_path / "e")]) == 0
    assert EncryptionKey.load(tmp_path / "e.key").public_bytes == load_public_key(
        tmp_path / "e.pub"
    )
    capsys.readouterr()
    assert main(["keys", "id", str(tmp_path / "s.pub")]) == 0
    assert capsys.readouterr().out.strip() == key.key_id
    assert main(["keys", "generate", "--kind", "signing", "--out", str(tmp_path / "s")]) == 2


def test_trust_show_prints_members_and_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trust show` lists every member's keys as a table, and as JSON with --json."""
    d = _init(tmp_path)
    capsys.readouterr()
    assert main(["trust", "show", str(d / "trust.list")]) == 0
    out = capsys.readouterr().out
    trust = load_trust_list(d / "trust.list")
    for m in trust.members.values():
        assert m.signing_keys[0].key_id in out
        assert m.encryption_keys[0].key_id in out
    assert (
        main(["trust", "show", str(d / "trust.list"), "--json", "--root-key", str(d / "root.pub")])
        == 0
    )
    view = json.loads(capsys.readouterr().out)
    assert [m["node_id"] for m in view["members"]] == ["DE", "FR", "NL"]
    assert view["revocations"] == []


def test_trust_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`trust verify` exits 0 for a good list, 1 with a reason for a tampered list or wrong root."""
    d = _init(tmp_path)
    assert main(["trust", "verify", str(d / "trust.list")]) == 0
    SigningKey.generate().save(tmp_path / "other.key", tmp_path / "other.pub")
    assert (
        main(["trust", "verify", str(d / "trust.list"), "--root-key", str(tmp_path / "other.pub")])
        == 1
    )
    assert "bad_trust_list" in capsys.readouterr().err
    data = bytearray((d / "trust.list").read_bytes())
    data[-40] ^= 0xFF
    (d / "trust.list").write_bytes(bytes(data))
    assert main(["trust", "verify", str(d / "trust.list")]) == 1


def test_trust_revoke_resigns_the_next_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trust revoke` writes version 2, signed by the root, with the key refused from --at."""
    d = _init(tmp_path)
    fr = SigningKey.load(d / "FR" / "signing.key")
    at = "2030-01-01T00:00:00+00:00"
    args = [
        "trust",
        "revoke",
        str(d / "trust.list"),
        "--key-id",
        fr.key_id,
        "--reason",
        "compromised",
    ]
    assert main([*args, "--at", at]) == 0
    trust = load_trust_list(d / "trust.list")
    assert trust.version == 2
    with pytest.raises(VerificationError) as info:
        trust.signing_key(fr.key_id, datetime(2030, 1, 1, tzinfo=UTC))
    assert info.value.reason is Reason.REVOKED_KEY
    capsys.readouterr()
    assert main([*args, "--at", "yesterday"]) == 2
    assert "--at" in capsys.readouterr().err


def test_trust_add_adds_a_member_and_rotates_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`trust add` adds a new member with its keys, and a new key to an existing member."""
    d = _init(tmp_path)
    SigningKey.generate().save(tmp_path / "pl.key", tmp_path / "pl.pub")
    EncryptionKey.generate().save(tmp_path / "ple.key", tmp_path / "ple.pub")
    trust_file = str(d / "trust.list")
    args = ["trust", "add", trust_file, "--node", "PL", "--name", "NCP Poland"]
    keys = [
        "--signing-key",
        str(tmp_path / "pl.pub"),
        "--encryption-key",
        str(tmp_path / "ple.pub"),
    ]
    assert main([*args, *keys]) == 0
    trust = load_trust_list(d / "trust.list")
    assert trust.version == 2
    pl = trust.member(NodeId("PL"))
    assert pl.name == "NCP Poland"
    assert pl.signing_keys[0].key_id == key_id_for(load_public_key(tmp_path / "pl.pub"))
    new = SigningKey.generate()
    new.save(tmp_path / "fr2.key", tmp_path / "fr2.pub")
    rotate = [
        "trust",
        "add",
        trust_file,
        "--node",
        "FR",
        "--signing-key",
        str(tmp_path / "fr2.pub"),
    ]
    assert main([*rotate, "--valid-from", "2031-01-01T00:00:00Z"]) == 0
    trust = load_trust_list(d / "trust.list")
    assert [k.key_id for k in trust.member(NodeId("FR")).signing_keys][1] == new.key_id
    assert trust.signing_key(new.key_id, datetime(2031, 1, 2, tzinfo=UTC))[0] == "FR"
    capsys.readouterr()
    assert main(["trust", "add", trust_file, "--node", "FR"]) == 2
    assert "member already" in capsys.readouterr().err
    assert main(["trust", "add", trust_file, "--node", "pl"]) == 2
