"""A private SASL_SSL broker (``kafka.sh`` with ``NCP_KAFKA_SECURITY=sasl_ssl``) for tests.

:class:`SecureBroker` writes a users file (one SCRAM user per name, random passwords) and
lets ``kafka.sh`` make a development CA and the broker's certificate in its folder; it
starts on free ports (or those given), and hands out :class:`KafkaSettings` per user.
The operator (``operator``) is the brokers' super user; every other user has only what
ACLs (``exchange admin provision``) grant.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from exchange.bus import KafkaSettings, SecurityProtocol
from tests.helpers.broker import BrokerUnavailableError, _kafka_sh

OPERATOR = "operator"


@dataclass
class SecureBroker:
    """A SASL_SSL broker on ``port`` with SCRAM users ``users`` (+ the operator)."""

    directory: Path
    port: int
    controller_port: int
    users: tuple[str, ...] = ("FR", "DE", "NL")
    start_timeout_s: int = 120
    passwords: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.passwords = {u: secrets.token_hex(12) for u in (OPERATOR, *self.users)}
        users = self.directory / "users"
        users.write_text("".join(f"{u} {p}\n" for u, p in self.passwords.items()))
        users.chmod(0o600)
        for user, password in self.passwords.items():
            (self.directory / f"{user}.password").write_text(password + "\n")

    @property
    def env(self) -> dict[str, str]:
        return {
            "NCP_KAFKA_PORT": str(self.port),
            "NCP_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "NCP_KAFKA_START_TIMEOUT_S": str(self.start_timeout_s),
            "NCP_KAFKA_SECURITY": "sasl_ssl",
            "NCP_KAFKA_USERS_FILE": str(self.directory / "users"),
            "NCP_KAFKA_TLS_DIR": str(self.directory / "tls"),
            "NCP_KAFKA_OPERATOR": OPERATOR,
        }

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def cafile(self) -> Path:
        return self.directory / "tls" / "ca.pem"

    def password_file(self, user: str) -> Path:
        return self.directory / f"{user}.password"

    def kafka_table(self, user: str) -> dict[str, str]:
        """A node config's ``[kafka]`` entries for ``user`` (password from a file)."""
        return {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "sasl_password_file": str(self.password_file(user)),
            "ssl_cafile": str(self.cafile),
        }

    def settings(self, user: str, password: str | None = None) -> KafkaSettings:
        """Settings for ``user`` (its own password unless ``password``)."""
        return KafkaSettings(
            bootstrap_servers=self.bootstrap,
            security_protocol=SecurityProtocol.SASL_SSL,
            sasl_username=user,
            sasl_password=password if password is not None else self.passwords[user],  # type: ignore[arg-type]
            ssl_cafile=self.cafile,
            client_id=f"ncp-test-{user}",
            request_timeout_ms=15_000,
        )

    def start(self) -> None:
        done = _kafka_sh("start", self.env, timeout_s=self.start_timeout_s + 120)
        if done.returncode != 0:
            raise BrokerUnavailableError(f"secured kafka.sh start failed: {done.stderr.strip()}")

    def stop(self) -> None:
        _kafka_sh("stop", self.env, timeout_s=60)

    def reset(self) -> None:
        _kafka_sh("reset", self.env, timeout_s=60)
