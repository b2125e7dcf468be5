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


def deploy_check_ids():
    """The ids `manage.py check --deploy` reports (silenced ones left out, as it does)."""
    from django.core import checks

    messages = checks.run_checks(include_deployment_checks=True, tags=["security"])
    return {m.id for m in messages if not m.is_silenced()}


@pytest.fixture
def hardened(settings):
    """Every setting Django's deploy checks look at, as strict as they ask for."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = settings.SECURE_HSTS_PRELOAD = True
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    return settings


def test_checks_deploy_finds_the_async_security_middleware(hardened):
    ids = deploy_check_ids()
    # Django's own "not installed" warnings are silenced; ours find our stand-ins installed.
    assert not ids & {"security.W001", "security.W002", "security.W003"}
    assert not {i for i in ids if i.startswith("mamba.")}
    assert ids <= {"security.W009"}  # the test settings' short SECRET_KEY


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("SECURE_HSTS_SECONDS", 0, "security.W004"),
        ("SECURE_HSTS_INCLUDE_SUBDOMAINS", False, "security.W005"),
        ("SECURE_HSTS_PRELOAD", False, "security.W021"),
        ("SECURE_CONTENT_TYPE_NOSNIFF", False, "security.W006"),
        ("SECURE_SSL_REDIRECT", False, "security.W008"),
        ("SECURE_REFERRER_POLICY", None, "security.W022"),
        ("SECURE_REFERRER_POLICY", "everywhere", "security.E023"),
        ("SECURE_CROSS_ORIGIN_OPENER_POLICY", "open", "security.E024"),
        ("CSRF_COOKIE_SECURE", False, "security.W016"),
        ("X_FRAME_OPTIONS", "SAMEORIGIN", "security.W019"),
    ],
)
def test_checks_deploy_warns_about_weak_security_settings(hardened, setting, value, expected):
    assert expected not in deploy_check_ids()
    setattr(hardened, setting, value)
    assert expected in deploy_check_ids()


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ("mamba_site.security.SecurityMiddleware", "mamba.W010"),
        ("mamba_site.middleware.AdminCsrfViewMiddleware", "mamba.W011"),
        ("mamba_site.middleware.AdminXFrameOptionsMiddleware", "mamba.W012"),
    ],
)
def test_checks_deploy_warns_when_a_stand_in_middleware_is_missing(settings, middleware, expected):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != middleware]
    assert expected in deploy_check_ids()


@pytest.mark.django_db  # the model checks ask SQLite's connection for its features
def test_checks_deploy_reports_hsts_off_through_the_command(settings):
    from io import StringIO

    from django.core.management import call_command

    settings.SECURE_HSTS_SECONDS = 0
    out, err = StringIO(), StringIO()
    call_command("check", "--deploy", stdout=out, stderr=err)
    output = out.getvalue() + err.getvalue()
    assert "security.W004" in output
    assert "security.W001" not in output


@pytest.mark.parametrize("mode", ["origin", "api_key,origin", "jwt,origin", "api_key,jwt,origin"])
def test_checks_accept_the_origin_mode_combined(settings, mode):
    settings.AUTH_MODE = mode
    settings.AUTH_JWT_SECRET = "s" * 32
    assert check_auth_mode() == []


def test_checks_refuse_origin_with_none(settings):
    settings.AUTH_MODE = "none,origin"
    assert ids(check_auth_mode()) == ["mamba.E002"]


def test_checks_refuse_malformed_trusted_proxies(settings):
    from mamba_site.checks import check_trusted_proxies

    settings.TRUSTED_PROXIES = "the ingress"
    assert ids(check_trusted_proxies()) == ["mamba.E006"]
    settings.TRUSTED_PROXIES = "10.0.0.0/8, fd00::/8"
    assert check_trusted_proxies() == []


def test_checks_want_the_frontend_middleware_before_cors(settings):
    from mamba_site.checks import FRONTEND_MIDDLEWARE, check_frontend_middleware

    assert check_frontend_middleware() == []
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != FRONTEND_MIDDLEWARE]
    assert ids(check_frontend_middleware()) == ["mamba.E007"]


def test_checks_warn_when_origin_mode_trusts_no_proxy(settings):
    from mamba_site.checks import check_origin_clients

    settings.AUTH_MODE = "api_key,origin"
    settings.TRUSTED_PROXIES = ""
    assert ids(check_origin_clients()) == ["mamba.W004"]
    settings.TRUSTED_PROXIES = "1"
    assert check_origin_clients() == []
    settings.AUTH_MODE = "api_key"
    settings.TRUSTED_PROXIES = ""
    assert check_origin_clients() == []


def test_checks_reject_an_unknown_redis_error_mode(settings):
    settings.LIMITS_ON_REDIS_ERROR = "open"
    assert ids(check_outage_settings()) == ["mamba.E008"]


def test_checks_accept_the_redis_error_modes(settings):
    for mode in ("local", "closed"):
        settings.LIMITS_ON_REDIS_ERROR = mode
        assert "mamba.E008" not in ids(check_outage_settings())


def test_checks_warn_about_more_database_threads_than_pooled_connections(settings):
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    if not pool:
        pytest.skip("PostgreSQL's connection pool only")
    settings.DATABASE_THREADS = pool["max_size"] + 1
    assert ids(check_outage_settings()) == ["mamba.W005"]
