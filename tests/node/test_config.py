"""The node config: one TOML file, environment overrides, every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.errors import InputError, Reason
from nodes.config import ConfigError, OnRetraction, load_config
from tests.helpers.federation import Federation

GOOD = """\
node_id = "FR"
[keys]
signing_key = "signing.key"
encryption_key = "encryption.key"
trust_list = "../trust.list"
root_public_key = "../root.pub"
[kafka]
bootstrap_servers = "127.0.0.1:9092"
topic_prefix = "ncp"
[store]
url = "sqlite:///node.db"
[http]
listen = ""
"""


def write(folder: Path, text: str) -> Path:
    (folder / "fr").mkdir(exist_ok=True)
    for name in ("fr/signing.key", "fr/encryption.key", "trust.list", "root.pub"):
        (folder / name).touch()
    path = folder / "fr" / "node.toml"
    path.write_text(text)
    return path


def problems_of(path: Path) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.reason is Reason.BAD_CONFIG
    return dict(caught.value.problems)


def test_federation_init_config_loads(federation: Federation) -> None:
    """The config `exchange federation init` writes loads as it is, paths made absolute."""
    config = load_config(federation.config_path("DE"))
    assert config.node_id == "DE"
    assert config.keys.signing_key == federation.config_path("DE").parent / "signing.key"
    assert config.keys.trust_list == federation.trust_path.resolve()
    assert config.store.url == f"sqlite:///{federation.config_path('DE').parent / 'node.db'}"
    assert config.consumer_group == "ncp.node.DE"


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """Key files and the SQLite file are found beside the config, whatever the working folder."""
    config = load_config(write(tmp_path, GOOD))
    assert config.keys.encryption_key == (tmp_path / "fr" / "encryption.key").resolve()
    assert config.root_public_key_path == (tmp_path / "root.pub").resolve()
    assert config.store.url == f"sqlite:///{(tmp_path / 'fr' / 'node.db').resolve()}"
    assert config.http.host_port is None


def test_every_problem_is_listed_with_its_path(tmp_path: Path) -> None:
    """One error names each bad setting by its dotted path, with the reason."""
    text = GOOD.replace('node_id = "FR"', 'node_id = "france"').replace(
        'signing_key = "signing.key"', 'signing_key = "missing.key"'
    )
    text += """
[rules.alerts]
retention_days = 0
accept_senders = ["DE", "fr"]
categories_kept = ["FRAUDULENT_SALES", "JAYWALKING"]
drop_fields = ["description", "not a path"]
on_retraction = "shred"
colour = "blue"
[publisher]
backoff_initial_ms = 5000
backoff_max_ms = 100
[[connectors]]
name = "Bad Name"
plugin = "jsonl"
"""
    problems = problems_of(write(tmp_path, text))
    missing = (tmp_path / "fr" / "missing.key").resolve()
    assert problems["keys.signing_key"] == f"file not found: {missing}"
    assert "alpha-2" in problems["node_id"]
    assert "greater than or equal to 1" in problems["rules.alerts.retention_days"]
    assert "fr" in problems["rules.alerts.accept_senders"]
    assert "JAYWALKING" in problems["rules.alerts.categories_kept"]
    assert "not a path" in problems["rules.alerts.drop_fields"]
    assert "withdraw" in problems["rules.alerts.on_retraction"]
    assert problems["rules.alerts.colour"] == "unknown setting"
    assert "backoff_max_ms" in problems["publisher"]
    assert "connectors.0.name" in problems
    assert len(problems) == 10


def test_missing_and_unparsable_files_are_config_errors(tmp_path: Path) -> None:
    """A config that does not exist or is not TOML is refused with the file named."""
    assert "config file not found" in problems_of(tmp_path / "nope.toml").values()
    bad = write(tmp_path, "node_id = ")
    (reason,) = problems_of(bad).values()
    assert reason.startswith("not valid TOML")


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EXCHANGE_* variables (nested with __) win over the file's values."""
    monkeypatch.setenv("EXCHANGE_KAFKA__BOOTSTRAP_SERVERS", "broker.example:9093")
    monkeypatch.setenv("EXCHANGE_RULES__ALERTS__ON_RETRACTION", "purge")
    monkeypatch.setenv("EXCHANGE_CONSUMER__MAX_RECORDS", "500")
    config = load_config(write(tmp_path, GOOD))
    assert config.kafka.bootstrap_servers == "broker.example:9093"
    assert config.kafka.topic_prefix == "ncp"
    assert config.rules.alerts.on_retraction is OnRetraction.PURGE
    assert config.consumer.max_records == 500


def test_bad_environment_values_are_reported_like_file_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad override is named by its config path too."""
    monkeypatch.setenv("EXCHANGE_CONSUMER__MAX_RECORDS", "0")
    problems = problems_of(write(tmp_path, GOOD))
    assert "consumer.max_records" in problems


def test_kafka_security_settings_are_checked(tmp_path: Path) -> None:
    """SASL without credentials is refused, naming the kafka table."""
    text = GOOD.replace(
        'topic_prefix = "ncp"', 'topic_prefix = "ncp"\nsecurity_protocol = "SASL_SSL"'
    )
    problems = problems_of(write(tmp_path, text))
    assert any(path.startswith("kafka") and "sasl_username" in r for path, r in problems.items())


def test_rules_and_connectors_parse(tmp_path: Path) -> None:
    """Per-topic rules and connector entries come out typed, with defaults elsewhere."""
    text = (
        GOOD
        + """
[rules.alerts]
accept_senders = ["DE"]
categories_kept = ["FRAUDULENT_SALES"]
drop_fields = ["description", "indicators.value"]
retention_days = 30
onward_sharing_max_handling_code = "H0"
[rules.indicators]
accept_senders = "all"
[rules.pseudonyms]
query_allowed_from = ["DE", "NL"]
max_queries_per_hour = 10
[[connectors]]
name = "case-system"
plugin = "jsonl"
topics = ["alerts"]
options = { path = "out.jsonl" }
"""
    )
    config = load_config(write(tmp_path, text))
    alerts = config.rules.alerts
    assert (alerts.accept_senders, alerts.all_senders) == (["DE"], False)
    assert alerts.drop_fields == ["description", "indicators.value"]
    assert alerts.retention_days == 30
    assert config.rules.indicators.all_senders  # "all"
    assert config.rules.blacklist.all_senders
    assert config.rules.blacklist.all_categories
    assert config.rules.pseudonyms.max_queries_per_hour == 10
    (connector,) = config.connectors
    assert connector.options == {"path": "out.jsonl"}


def test_config_error_is_an_input_error(tmp_path: Path) -> None:
    """The CLI prints ConfigError like any InputError: one line per problem, exit 2."""
    with pytest.raises(InputError):
        load_config(tmp_path / "absent.toml")


def test_retry_table_and_the_former_publisher_backoff_keys(tmp_path: Path) -> None:
    """[retry] sets every loop's backoff; a file with only the former [publisher]
    backoff_initial_ms / backoff_max_ms still loads and means the same; [retry] wins."""
    legacy = load_config(
        write(tmp_path, GOOD + "[publisher]\nbackoff_initial_ms = 50\nbackoff_max_ms = 900\n")
    )
    assert (legacy.retry.initial_ms, legacy.retry.max_ms) == (50, 900)
    assert legacy.retry.policy().max_s == 0.9
    both = load_config(
        write(
            tmp_path,
            GOOD
            + "[publisher]\nbackoff_initial_ms = 50\n"
            + "[retry]\ninitial_ms = 70\nmax_ms = 2000\nunhealthy_after_s = 5\n",
        )
    )
    assert (both.retry.initial_ms, both.retry.max_ms, both.retry.unhealthy_after_s) == (70, 2000, 5)
    assert (both.publisher.backoff_initial_ms, both.publisher.backoff_max_ms) == (70, 2000)
    problems = problems_of(write(tmp_path, GOOD + "[retry]\ninitial_ms = 900\nmax_ms = 10\n"))
    assert "max_ms must be >= initial_ms" in problems["retry"]


def test_tlp_limits_of_topics_and_connectors(tmp_path: Path) -> None:
    """onward_sharing_max_tlp and a connector's allowed_tlp take TLP names in any common
    spelling (TLP:RED, amber+strict) and refuse unknown ones."""
    connector = '[[connectors]]\nname = "case"\nplugin = "jsonl"\nallowed_tlp = [{}]\n'
    rules = '[rules.alerts]\nonward_sharing_max_tlp = "{}"\n'
    config = load_config(
        write(
            tmp_path,
            GOOD + rules.format("amber+strict") + connector.format('"TLP:RED", "AMBER+STRICT"'),
        )
    )
    assert config.rules.alerts.onward_sharing_max_tlp == "AMBER_STRICT"
    assert config.rules.blacklist.onward_sharing_max_tlp == "RED"
    assert config.connectors[0].allowed_tlp == ["RED", "AMBER_STRICT"]
    problems = problems_of(write(tmp_path, GOOD + rules.format("PURPLE") + connector.format('"X"')))
    assert "rules.alerts.onward_sharing_max_tlp" in problems
    assert "connectors.0.allowed_tlp.0" in problems
