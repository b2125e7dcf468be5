"""App config of the project package: checks, the API key and frontend caches' invalidation,
CORS for registered frontends, the database's watchdog and the usage records' flush at
shutdown."""

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save


class MambaSiteConfig(AppConfig):
    name = "mamba_site"
    verbose_name = "Mamba"

    def ready(self) -> None:
        from corsheaders.signals import check_request_enabled

        from mamba_site import checks, lifecycle  # noqa: F401  (checks: registers them)
        from mamba_site.auth import api_keys_invalidate
        from mamba_site.background import background_wait_at_shutdown
        from mamba_site.db import db_install
        from mamba_site.frontends import cors_allows_frontend, frontends
        from mamba_site.models import ApiKey, Frontend
        from mamba_site.providers import providers
        from mamba_site.usage import usage_flush_at_shutdown

        db_install()
        lifecycle.at_shutdown(background_wait_at_shutdown)  # writes in flight end first
        lifecycle.at_shutdown(usage_flush_at_shutdown)

        setting_changed.connect(providers.setting_changed, dispatch_uid="providers_settings")

        post_save.connect(api_keys_invalidate, sender=ApiKey, dispatch_uid="api_keys_save")
        post_delete.connect(api_keys_invalidate, sender=ApiKey, dispatch_uid="api_keys_delete")
        post_save.connect(frontends.invalidate, sender=Frontend, dispatch_uid="frontends_save")
        post_delete.connect(frontends.invalidate, sender=Frontend, dispatch_uid="frontends_delete")
        check_request_enabled.connect(cors_allows_frontend, dispatch_uid="cors_frontends")
