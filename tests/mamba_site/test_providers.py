"""The providers file: parsing, validation errors that name the file, table and key, and the
system check that runs it at start-up and in `manage.py check`."""

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from mamba_site.checks import check_providers
from mamba_site.providers import ProvidersConfigError, Target, from_file, providers_config

GOOD = """
[providers.primary]
base_url = "https://api.openai.com/v1"
api_key_env = "PRIMARY_KEY"

[providers.backup]
base_url = "https://other.example/v1/"
api_key_env = "BACKUP_KEY"
timeout_seconds = 30
max_tokens_param = "max_completion_tokens"
headers = {"X-Team" = "chat"}
cooldown_failures = 5
cooldown_seconds = 60

[models."gpt-4o-mini"]
targets = ["primary/gpt-4o-mini", "backup/gpt-4o-mini"]
strategy = "weighted"
weights = [3, 1]
fallbacks = ["gpt-4o"]
name = "GPT-4o mini"
context_window = 128000

[models."gpt-4o"]
targets = ["primary/gpt-4o"]
"""
ENV = {"PRIMARY_KEY": "sk-1", "BACKUP_KEY": "sk-2"}


def load(tmp_path, text, environ=ENV, mock=False):
    path = tmp_path / "providers.toml"
    path.write_text(text)
    return from_file(path, environ=environ, mock_enabled=mock)


def error_of(tmp_path, text, environ=ENV):
    with pytest.raises(ProvidersConfigError) as caught:
        load(tmp_path, text, environ)
    return str(caught.value)


def test_providers_file_is_read_with_defaults_and_options(tmp_path):
    config = load(tmp_path, GOOD)
    backup = config.providers["backup"]
    assert backup.base_url == "https://other.example/v1"
    assert backup.api_key == "sk-2"
    assert backup.timeout_seconds == 30
    assert backup.max_tokens_param == "max_completion_tokens"
    assert dict(backup.headers) == {"X-Team": "chat"}
    assert (backup.cooldown_failures, backup.cooldown_seconds) == (5, 60)
    assert config.providers["primary"].stream_usage is True
    route = config.models["gpt-4o-mini"]
    assert route.targets == (Target("primary", "gpt-4o-mini"), Target("backup", "gpt-4o-mini"))
    assert (route.strategy, route.weights, route.fallbacks) == ("weighted", (3.0, 1.0), ("gpt-4o",))
    assert config.model_names() == ["gpt-4o-mini", "gpt-4o"]
    assert config.catalog[0]["name"] == "GPT-4o mini"
    assert config.route("gpt-5") is None  # no passthrough: only declared names


def test_providers_file_keeps_secrets_out_of_repr(tmp_path):
    assert "sk-1" not in repr(load(tmp_path, GOOD))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("primary/gpt-4o-mini", "nowhere/gpt-4o-mini"), '[models."gpt-4o-mini"] targets: '),
        (("primary/gpt-4o-mini", "primary"), "is not provider/model"),
        (('api_key_env = "PRIMARY_KEY"', 'api_key = "sk-inline"'), "[providers.primary] api_key:"),
        (("timeout_seconds = 30", "timeout_seconds = -1"), "[providers.backup] timeout_seconds:"),
        (("timeout_seconds = 30", 'timeout_seconds = "30"'), "must be a number, not str"),
        (('strategy = "weighted"', 'strategy = "random"'), "strategy: must be"),
        (("weights = [3, 1]", "weights = [3]"), "weights: must give one number"),
        (('fallbacks = ["gpt-4o"]', 'fallbacks = ["gpt-5"]'), "'gpt-5' is not a declared model"),
        (("cooldown_seconds = 60", "cooldown_second = 60"), "cooldown_second: is not a known key"),
        (('"https://other.example/v1/"', '"other.example"'), "base_url: must be an http(s) URL"),
        (('"max_completion_tokens"', '"max_output"'), "max_tokens_param: must be one of"),
    ],
)
def test_providers_file_errors_name_file_table_and_key(tmp_path, change, message):
    text = error_of(tmp_path, GOOD.replace(*change))
    assert text.startswith(str(tmp_path / "providers.toml") + ": ")
    assert message in text


def test_providers_file_unset_key_variable_is_an_error(tmp_path):
    text = error_of(tmp_path, GOOD, environ={"PRIMARY_KEY": "sk-1"})
    assert "[providers.backup] api_key_env: the environment variable BACKUP_KEY is not set" in text


def test_providers_file_fallback_cycle_is_an_error(tmp_path):
    text = error_of(tmp_path, GOOD + 'fallbacks = ["gpt-4o-mini"]\n')
    assert "a cycle (gpt-4o-mini -> gpt-4o -> gpt-4o-mini)" in text


def test_providers_file_that_is_not_toml_is_an_error(tmp_path):
    assert "not valid TOML" in error_of(tmp_path, "[providers.primary\n")


def test_providers_file_missing_is_an_error(tmp_path):
    with pytest.raises(ProvidersConfigError, match="cannot be read"):
        from_file(tmp_path / "absent.toml", environ=ENV, mock_enabled=False)


def test_providers_file_passthrough_serves_undeclared_names(tmp_path):
    config = load(tmp_path, GOOD + '[routing]\npassthrough = "primary"\n')
    assert config.route("gpt-5").targets == (Target("primary", "gpt-5"),)


def test_providers_file_without_key_variable_needs_no_secret(tmp_path):
    text = (
        '[providers.local]\nbase_url = "http://127.0.0.1:11434/v1"\n'
        '[routing]\npassthrough = "local"\n'
    )
    assert load(tmp_path, text).providers["local"].api_key == "unused"


def test_providers_from_settings_is_one_openai_provider(settings):
    settings.PROVIDERS_FILE = ""
    settings.OPENAI_BASE_URL = "http://upstream.test/v1"
    config = providers_config()
    assert list(config.providers) == ["openai"]
    assert config.route("anything").targets == (Target("openai", "anything"),)


def test_check_providers_reports_a_bad_file(tmp_path, settings, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "providers.toml"
    path.write_text(GOOD.replace("primary/gpt-4o-mini", "nowhere/gpt-4o-mini"))
    settings.PROVIDERS_FILE = str(path)
    [error] = check_providers()
    assert error.id == "mamba.E005"
    assert "names an unknown provider 'nowhere'" in error.msg


@pytest.mark.django_db  # the model checks ask SQLite's connection for its features
def test_manage_check_fails_on_a_bad_providers_file(tmp_path, settings):
    path = tmp_path / "providers.toml"
    path.write_text("[models.x]\ntargets = []\n")
    settings.PROVIDERS_FILE = str(path)
    with pytest.raises(SystemCheckError, match=r"mamba\.E005"):
        call_command("check")
