"""Refused Kafka credentials are an AuthenticationError, never an outage (no broker needed;
the real SASL_SSL broker's refusals are in tests/secure/test_refused_credentials.py)."""

from __future__ import annotations

import pytest
from aiokafka import client as aiokafka_client
from aiokafka import conn as aiokafka_conn
from aiokafka.errors import (
    KafkaConnectionError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from exchange import authguard, bus_lifecycle
from exchange.bus import KafkaSettings, ensure_topics, translate
from exchange.errors import AuthenticationError, Reason, TransientError


@pytest.mark.parametrize("refusal", authguard.REFUSALS, ids=lambda c: c.__name__)
def test_each_kind_of_refusal_is_a_non_retriable_authentication_error(refusal: type) -> None:
    """Every error meaning "credentials refused" becomes an AuthenticationError (BAD_CONFIG
    on ``kafka``, not retriable) that says what to check and what was done."""
    error = translate(refusal("refused"), "starting the consumer")
    assert isinstance(error, AuthenticationError)
    assert (error.reason, error.field, error.retriable) == (Reason.BAD_CONFIG, "kafka", False)
    assert error.detail.startswith("starting the consumer: the Kafka cluster refused")
    assert "kafka.sasl_username" in error.detail


def test_an_authorisation_failure_is_a_configuration_error_but_not_a_refused_login() -> None:
    """A missing ACL stays a BAD_CONFIG error of its own: the login was accepted."""
    error = translate(TopicAuthorizationFailedError(), "producing")
    assert error.reason is Reason.BAD_CONFIG
    assert not error.retriable
    assert not isinstance(error, AuthenticationError)


def test_an_unreachable_cluster_is_still_an_outage() -> None:
    """A failed bootstrap with no refusal among its causes stays a retriable TransientError."""
    error = translate(KafkaConnectionError("Unable to bootstrap from [...]"), "fetching")
    assert isinstance(error, TransientError)
    assert error.retriable


async def test_a_closed_port_is_retried_as_an_outage_through_the_guarded_bootstrap() -> None:
    """Nothing listening (no SASL exchange at all): the guarded bootstrap leaves aiokafka's
    connection error as it is, and the caller gets a TransientError to retry."""
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:1", request_timeout_ms=2_000)
    with pytest.raises(TransientError):
        await ensure_topics(settings, "ncp")


def test_the_refusal_names_user_mechanism_and_server_in_the_brokers_words() -> None:
    """The text carries the SASL user, the mechanism, the server and the broker's message."""
    text = authguard.refusal_text(
        SaslAuthenticationFailed("invalid credentials with SASL mechanism SCRAM-SHA-512"),
        user="DE",
        mechanism="SCRAM-SHA-512",
        host="k1.example",
        port=9093,
    )
    assert text == (
        "k1.example:9093 refused SASL user 'DE' (SCRAM-SHA-512): "
        "invalid credentials with SASL mechanism SCRAM-SHA-512"
    )
    bare = authguard.refusal_text(
        SaslAuthenticationFailed(), user=None, mechanism=None, host="h", port=1
    )
    assert bare == "h:1 refused the SASL credentials: SASL Authentication failed."


def test_install_is_idempotent_and_leaves_create_conn_to_bus_lifecycle() -> None:
    """Installing twice wraps aiokafka once; the connection factory that
    exchange.bus_lifecycle wraps is not touched."""
    bootstrap = aiokafka_client.AIOKafkaClient.bootstrap
    handshake = aiokafka_conn.AIOKafkaConnection._do_sasl_handshake
    create_conn = aiokafka_client.create_conn
    authguard.install()
    assert aiokafka_client.AIOKafkaClient.bootstrap is bootstrap
    assert aiokafka_conn.AIOKafkaConnection._do_sasl_handshake is handshake
    assert getattr(bootstrap, "_exchange_authguard", False)
    assert aiokafka_client.create_conn is create_conn
    bus_lifecycle.install()  # still its own wrapper: no RuntimeError


async def test_a_refused_connection_is_dropped_at_once_not_closed_gracefully() -> None:
    """A login the server refuses (here: the mechanism) aborts the connection's transport,
    so no TLS goodbye is waited for and no socket outlives a command's event loop; the
    refusal goes on."""

    class Transport:
        aborted = False

        def abort(self) -> None:
            self.aborted = True

    class Writer:
        transport = Transport()

    class Answer:
        error_code = UnsupportedSaslMechanismError.errno

    class Refused:  # an AIOKafkaConnection as far as the SASL handshake goes
        _writer = Writer()
        _sasl_mechanism = "SCRAM-SHA-512"
        host, port = "127.0.0.1", 1

        async def send(self, request: object) -> Answer:
            return Answer()

        def close(self, reason: object = None, exc: object = None) -> None:
            pass  # aiokafka's graceful close: what the guard must not rely on

    with pytest.raises(UnsupportedSaslMechanismError):
        await aiokafka_conn.AIOKafkaConnection._do_sasl_handshake(Refused())  # type: ignore[arg-type]
    assert Writer.transport.aborted
