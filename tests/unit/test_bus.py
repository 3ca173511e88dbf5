"""KafkaSettings validation and the aiokafka keyword arguments derived from it (no broker)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, RequestTimedOutError, SaslAuthenticationFailed
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exchange.bus import (
    KafkaSettings,
    SaslMechanism,
    SecurityProtocol,
    consumer_kwargs,
    ensure_topics,
    federation_topics,
    kafka_errors,
    load_settings,
    producer_kwargs,
    ssl_context,
    stop_quietly,
    translate,
)
from exchange.errors import ExchangeError, InputError, Reason, TransientError

BASE: dict[str, Any] = {"bootstrap_servers": "127.0.0.1:9092"}


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InputError) as caught:
        load_settings(data)
    assert caught.value.reason is Reason.BAD_CONFIG
    return dict(caught.value.problems)


def test_plaintext_defaults_give_an_idempotent_all_acks_producer_with_large_batches() -> None:
    """The default producer is idempotent, waits for all in-sync replicas and batches up to 1 MB."""
    kwargs = producer_kwargs(load_settings(BASE))
    assert kwargs["enable_idempotence"] is True
    assert kwargs["acks"] == "all"
    assert kwargs["max_batch_size"] == 1_048_576
    assert kwargs["linger_ms"] == 5
    assert kwargs["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" not in kwargs
    assert "sasl_mechanism" not in kwargs


def test_consumer_never_commits_on_its_own() -> None:
    """The consumer has auto-commit off, starts from the earliest offset and takes a group id."""
    kwargs = consumer_kwargs(load_settings(BASE), group_id="ncp-FR")
    assert kwargs["enable_auto_commit"] is False
    assert kwargs["auto_offset_reset"] == "earliest"
    assert kwargs["group_id"] == "ncp-FR"
    assert kwargs["bootstrap_servers"] == "127.0.0.1:9092"


@pytest.mark.parametrize("servers", ["", "localhost", "a:9092,,b:9092", "host:port"])
def test_bad_bootstrap_servers_are_refused_by_name(servers: str) -> None:
    """A bootstrap list that is not comma-separated host:port is refused, naming the field."""
    assert "bootstrap_servers" in _problems({"bootstrap_servers": servers})


def test_several_bootstrap_servers_are_accepted_and_joined_without_spaces() -> None:
    """A comma-separated list with spaces is accepted and handed to aiokafka without them."""
    s = load_settings({"bootstrap_servers": "k1.example:9093, k2.example:9093"})
    assert producer_kwargs(s)["bootstrap_servers"] == "k1.example:9093,k2.example:9093"


@pytest.mark.parametrize("protocol", ["SASL_PLAINTEXT", "SASL_SSL"])
def test_sasl_requires_a_username(protocol: str) -> None:
    """SASL without a username is refused, naming sasl_username."""
    problems = _problems({**BASE, "security_protocol": protocol, "sasl_password": "pw"})
    assert "required" in problems["sasl_username"]


def test_sasl_requires_a_password() -> None:
    """SASL without a (non-empty) password is refused, naming sasl_password."""
    data = {
        **BASE,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_username": "fr",
        "sasl_password": "",
    }
    assert "required" in _problems(data)["sasl_password"]


def test_unknown_protocol_and_mechanism_are_refused_by_name() -> None:
    """Values outside the enums are refused, each naming its field."""
    problems = _problems({**BASE, "security_protocol": "TLS", "sasl_mechanism": "GSSAPI"})
    assert set(problems) == {"security_protocol", "sasl_mechanism"}


def test_missing_tls_file_is_refused_by_name(tmp_path: Path) -> None:
    """A CA file that does not exist is refused, naming ssl_cafile."""
    data = {**BASE, "security_protocol": "SSL", "ssl_cafile": str(tmp_path / "nope.pem")}
    assert "no such file" in _problems(data)["ssl_cafile"]


def test_tls_files_with_plaintext_are_refused(tmp_path: Path) -> None:
    """TLS files with a plaintext protocol are refused: they would be silently ignored."""
    cert, _ = _self_signed(tmp_path)
    assert "PLAINTEXT" in _problems({**BASE, "ssl_cafile": str(cert)})["ssl_cafile"]


def test_key_without_certificate_is_refused(tmp_path: Path) -> None:
    """A client key without its certificate is refused, naming ssl_keyfile."""
    _, key = _self_signed(tmp_path)
    data = {**BASE, "security_protocol": "SSL", "ssl_keyfile": str(key)}
    assert "ssl_certfile" in _problems(data)["ssl_keyfile"]


def test_unknown_field_is_refused_by_name() -> None:
    """A misspelt setting is refused rather than ignored."""
    assert "sasl_user" in _problems({**BASE, "sasl_user": "fr"})


def test_sasl_ssl_settings_reach_aiokafka(tmp_path: Path) -> None:
    """SASL_SSL with SCRAM gives aiokafka the mechanism, credentials and a verifying TLS context."""
    cert, key = _self_signed(tmp_path)
    s = load_settings(
        {
            **BASE,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "fr",
            "sasl_password": "s3cret",
            "ssl_cafile": str(cert),
            "ssl_certfile": str(cert),
            "ssl_keyfile": str(key),
        }
    )
    assert s.security_protocol is SecurityProtocol.SASL_SSL
    assert s.sasl_mechanism is SaslMechanism.SCRAM_SHA_256
    assert "s3cret" not in repr(s)
    kwargs = producer_kwargs(s)
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-256"
    assert kwargs["sasl_plain_username"] == "fr"
    assert kwargs["sasl_plain_password"] == "s3cret"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_unreadable_ca_file_gives_a_config_error(tmp_path: Path) -> None:
    """A CA file that is not PEM gives InputError naming ssl_cafile, not an ssl exception."""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    s = load_settings({**BASE, "security_protocol": "SSL", "ssl_cafile": str(bad)})
    with pytest.raises(InputError) as caught:
        ssl_context(s)
    assert caught.value.field == "ssl_cafile"


def test_federation_topics_give_the_blacklist_one_partition() -> None:
    """The blacklist topic has one partition (ordered per list); the others the count asked."""
    assert federation_topics("x", 6) == {
        "x.alerts.v1": 6,
        "x.blacklist.v1": 1,
        "x.pseudonyms.v1": 6,
        "x.indicators.v1": 6,
    }


async def test_ensure_topics_refuses_zero_partitions_before_connecting() -> None:
    """A partition count below one is refused by name, without touching the network."""
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1")
    with pytest.raises(InputError) as caught:
        await ensure_topics(settings, {"t": 0})
    assert caught.value.field == "topics.t"


def test_connection_errors_become_transient() -> None:
    """Lost connections and timeouts become retriable TransientError."""
    for exc in (KafkaConnectionError("down"), RequestTimedOutError(), TimeoutError(), OSError()):
        error = translate(exc, "producing")
        assert isinstance(error, TransientError)
        assert error.retriable
        assert error.reason is Reason.UNAVAILABLE


def test_authentication_failures_are_config_errors_not_retried() -> None:
    """A refused login is a configuration error that retrying will not fix."""
    error = translate(SaslAuthenticationFailed("bad password"), "connecting")
    assert error.reason is Reason.BAD_CONFIG
    assert not error.retriable


def test_kafka_errors_block_lets_no_aiokafka_exception_escape() -> None:
    """Inside ``kafka_errors`` an aiokafka exception surfaces as an ExchangeError chained to it."""
    with pytest.raises(ExchangeError) as caught, kafka_errors("sending"):
        raise KafkaConnectionError("broker gone")
    assert isinstance(caught.value.__cause__, KafkaConnectionError)
    assert "sending" in caught.value.detail


def test_sasl_plain_over_plaintext_is_refused_unless_allowed() -> None:
    """PLAIN over SASL_PLAINTEXT (a password in clear on the wire) is refused naming
    sasl_mechanism, unless allow_plaintext_sasl_plain is set; SCRAM or SASL_SSL are fine."""
    data = {
        **BASE,
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "fr",
        "sasl_password": "pw",
    }
    assert "allow_plaintext_sasl_plain" in _problems(data)["sasl_mechanism"]
    assert load_settings({**data, "allow_plaintext_sasl_plain": True}).sasl_mechanism == "PLAIN"
    assert load_settings({**data, "sasl_mechanism": "SCRAM-SHA-256"}).sasl_username == "fr"
    assert load_settings({**data, "security_protocol": "SASL_SSL"}).sasl_username == "fr"
    assert "allow_plaintext_sasl_plain" not in producer_kwargs(load_settings(BASE))


class _SlowClient:
    """An aiokafka client stand-in whose stop takes a while (or is cut short inside)."""

    def __init__(self, *, stop_s: float = 0.2, cut_short: bool = False) -> None:
        self.stop_s, self.cut_short = stop_s, cut_short
        self.stopped = False
        self._client = self  # the inner client stop_quietly closes when stop is cut short
        self.inner_closed = False

    async def stop(self) -> None:
        await asyncio.sleep(self.stop_s)
        if self.cut_short:
            raise asyncio.CancelledError  # as aiokafka's stop cancelling its own fetch
        self.stopped = True

    async def close(self) -> None:
        self.inner_closed = True


async def test_stop_quietly_finishes_the_stop_before_a_cancellation_goes_through() -> None:
    """A task cancelled while it stops a client still stops it (no connection left open),
    then ends cancelled."""
    client = _SlowClient()
    task = asyncio.create_task(stop_quietly(client))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.stopped


async def test_stop_quietly_closes_the_client_when_its_own_stop_is_cut_short() -> None:
    """A stop ending in aiokafka's own CancelledError is not the caller's: no error, and
    the client underneath is closed."""
    client = _SlowClient(stop_s=0.0, cut_short=True)
    await stop_quietly(client)
    assert client.inner_closed
