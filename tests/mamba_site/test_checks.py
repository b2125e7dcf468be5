import pytest
from django.core.exceptions import ImproperlyConfigured

from mamba_site.checks import check_auth_mode, check_outage_settings, log_startup_warnings


def ids(messages):
    return [m.id for m in messages]


def test_checks_refuse_auth_none_in_production(settings):
    settings.AUTH_MODE = "none"
    settings.DEBUG = False
    settings.AUTH_ALLOW_NONE_IN_PRODUCTION = False
    assert ids(check_auth_mode()) == ["mamba.E001"]
    with pytest.raises(ImproperlyConfigured, match="MAMBA_AUTH__MODE=none"):
        log_startup_warnings()


def test_checks_warn_about_auth_none_in_development(settings, caplog):
    settings.AUTH_MODE = "none"
    settings.DEBUG = True
    assert ids(check_auth_mode()) == ["mamba.W003"]
    log_startup_warnings()
    assert "answers without authentication" in caplog.text


def test_checks_allow_none_in_production_when_told(settings):
    settings.AUTH_MODE = "none"
    settings.DEBUG = False
    settings.AUTH_ALLOW_NONE_IN_PRODUCTION = True
    assert ids(check_auth_mode()) == ["mamba.W003"]


@pytest.mark.parametrize("mode", ["basic", "none,api_key", ""])
def test_checks_reject_unknown_modes(settings, mode):
    settings.AUTH_MODE = mode
    assert ids(check_auth_mode()) == ["mamba.E002"]


def test_checks_jwt_needs_a_verification_key(settings):
    settings.AUTH_MODE = "jwt"
    settings.AUTH_JWT_SECRET = settings.AUTH_JWT_PUBLIC_KEY = settings.AUTH_JWT_JWKS_URL = ""
    assert ids(check_auth_mode()) == ["mamba.E003"]
    settings.AUTH_JWT_SECRET = "s" * 32
    assert check_auth_mode() == []


def test_checks_reject_an_unknown_max_tokens_param(settings):
    from mamba_site.checks import check_max_tokens_param

    settings.OPENAI_MAX_TOKENS_PARAM = "max_output"
    assert ids(check_max_tokens_param()) == ["mamba.E004"]
    settings.OPENAI_MAX_TOKENS_PARAM = "max_completion_tokens"
    assert check_max_tokens_param() == []


def test_checks_reject_an_unknown_redis_error_mode(settings):
    settings.LIMITS_ON_REDIS_ERROR = "open"
    assert ids(check_outage_settings()) == ["mamba.E006"]


def test_checks_accept_the_redis_error_modes(settings):
    for mode in ("local", "closed"):
        settings.LIMITS_ON_REDIS_ERROR = mode
        assert "mamba.E006" not in ids(check_outage_settings())


def test_checks_warn_about_more_database_threads_than_pooled_connections(settings):
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if not pool:
        pytest.skip("PostgreSQL's connection pool only")
    settings.DATABASE_THREADS = pool["max_size"] + 1
    assert ids(check_outage_settings()) == ["mamba.W004"]
