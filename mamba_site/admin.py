"""Admin for API keys (issue: the secret is shown once; revoke), frontends (register origins,
enable, disable), and the usage of both."""

import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from mamba_site.models import ApiKey, ApiKeyUsage, Frontend, FrontendUsage
from mamba_site.origins import OriginError, origins_parse
from mamba_site.services import api_key_prepare, api_key_revoke

NAME = re.compile(r"^[\w./:-]+$")


class NameListField(forms.Field):
    """A comma separated list of agent slugs or model names, stored as a JSON list."""

    def prepare_value(self, value: Any) -> Any:
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return value
        names = [name.strip() for name in (value or "").split(",") if name.strip()]
        bad = [name for name in names if not NAME.match(name)]
        if bad:
            raise ValidationError(f"Not a name: {', '.join(bad)}.")
        return list(dict.fromkeys(names))


class ApiKeyForm(forms.ModelForm):  # type: ignore[type-arg]
    allowed_agents = NameListField(
        required=False, help_text="Comma separated agent slugs; empty: every agent."
    )
    allowed_models = NameListField(
        required=False, help_text="Comma separated model names; empty: every model."
    )

    class Meta:
        model = ApiKey
        fields = (
            "name",
            "owner",
            "expires_at",
            "allowed_agents",
            "allowed_models",
            "requests_per_minute",
            "concurrent_streams",
            "tokens_per_day",
        )


USAGE_FIELDS = ("day", "requests", "input_tokens", "output_tokens", "errors")


class DailyUsageInline(admin.TabularInline):  # type: ignore[type-arg]
    """A key's or a frontend's usage by day, read-only (the usage outbox writes it)."""

    extra = 0
    can_delete = False
    fields = USAGE_FIELDS
    readonly_fields = fields
    max_num = 0


class DailyUsageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The usage of every key or frontend by day, read-only."""

    list_filter = ("day",)
    date_hierarchy = "day"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ApiKeyUsageInline(DailyUsageInline):
    model = ApiKeyUsage
    verbose_name_plural = "Usage by day (UTC)"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ApiKeyForm
    list_display = (
        "name",
        "key_prefix",
        "owner",
        "status",
        "created_at",
        "expires_at",
        "last_used_at",
    )
    list_filter = ("revoked_at", "expires_at")
    search_fields = ("name", "prefix", "owner__username")
    readonly_fields = (
        "key_prefix",
        "status",
        "created_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    inlines = (ApiKeyUsageInline,)
    actions = ("revoke",)

    @admin.display(description="Key")
    def key_prefix(self, api_key: ApiKey) -> str:
        return f"{api_key.prefix}…" if api_key.prefix else "-"

    @admin.display(description="Status")
    def status(self, api_key: ApiKey) -> str:
        return api_key.state() if api_key.pk else "-"

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            # Only this response shows the secret; nothing stores it.
            request._mamba_new_key_secret = api_key_prepare(obj)  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: Any = None
    ) -> HttpResponse:
        secret = getattr(request, "_mamba_new_key_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "Copy the new API key now",
            "api_key": obj,
            "secret": secret,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/mamba_site/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke the selected keys", permissions=("change",))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(api_key_revoke(api_key=key, by=request.user) for key in queryset)
        # Other replicas read the key table again every AUTH_KEY_CACHE_SECONDS, not at once.
        self.message_user(
            request,
            f"Revoked {revoked} key(s). They stop working at once on this replica and within "
            f"{settings.AUTH_KEY_CACHE_SECONDS:g} s on the others.",
        )


@admin.register(ApiKeyUsage)
class ApiKeyUsageAdmin(DailyUsageAdmin):
    list_display = ("day", "api_key", *USAGE_FIELDS[1:])
    search_fields = ("api_key__name", "api_key__prefix")
    list_select_related = ("api_key",)


class OriginListField(forms.Field):
    """Origins, one per line (or comma separated), stored as a JSON list in browser form."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60})

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            value = " ".join(value)
        try:
            return origins_parse(value or "")
        except OriginError as error:
            raise ValidationError(str(error)) from None


class FrontendForm(forms.ModelForm):  # type: ignore[type-arg]
    origins = OriginListField(
        help_text="One per line: scheme://host[:port], exactly as the page's address starts "
        "(https://chat.example.com). No paths, no wildcards."
    )
    allowed_agents = NameListField(
        required=False, help_text="Comma separated agent slugs; empty: every agent."
    )
    allowed_models = NameListField(
        required=False, help_text="Comma separated model names; empty: every model."
    )

    class Meta:
        model = Frontend
        fields = (
            "name",
            "origins",
            "enabled",
            "allowed_agents",
            "allowed_models",
            "requests_per_minute",
            "concurrent_streams",
            "tokens_per_day",
            "total_tokens_per_day",
        )


class FrontendUsageInline(DailyUsageInline):
    model = FrontendUsage
    verbose_name_plural = "Usage by day (UTC), all clients together"


@admin.register(Frontend)
class FrontendAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = FrontendForm
    list_display = (
        "name",
        "origin_list",
        "enabled",
        "requests_per_minute",
        "concurrent_streams",
        "tokens_per_day",
        "total_tokens_per_day",
        "updated_at",
    )
    list_filter = ("enabled",)
    search_fields = ("name",)
    readonly_fields = ("created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("name", "origins", "enabled", "allowed_agents", "allowed_models")}),
        (
            "Limits per client (IP address; IPv6: its /64)",
            {"fields": ("requests_per_minute", "concurrent_streams", "tokens_per_day")},
        ),
        ("Limit for all clients together", {"fields": ("total_tokens_per_day",)}),
        (None, {"fields": ("created_at", "updated_at")}),
    )
    inlines = (FrontendUsageInline,)
    actions = ("enable", "disable")

    @admin.display(description="Origins")
    def origin_list(self, frontend: Frontend) -> str:
        return ", ".join(frontend.origins or ())

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Frontend, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        self._note_delay(request)

    def _note_delay(self, request: HttpRequest) -> None:
        # Other replicas read the registry again every AUTH_KEY_CACHE_SECONDS, not at once.
        self.message_user(
            request,
            "Frontends change at once on this replica (origin admission and CORS) and within "
            f"{settings.AUTH_KEY_CACHE_SECONDS:g} s on the others.",
        )

    @admin.action(description="Enable the selected frontends", permissions=("change",))
    def enable(self, request: HttpRequest, queryset: QuerySet[Frontend]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable the selected frontends", permissions=("change",))
    def disable(self, request: HttpRequest, queryset: QuerySet[Frontend]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[Frontend], *, enabled: bool
    ) -> None:
        for frontend in queryset:  # save(), not update(): the signal refreshes this replica
            frontend.enabled = enabled
            frontend.save(update_fields=("enabled", "updated_at"))
        self._note_delay(request)


@admin.register(FrontendUsage)
class FrontendUsageAdmin(DailyUsageAdmin):
    list_display = ("day", "frontend", *USAGE_FIELDS[1:])
    search_fields = ("frontend__name",)
    list_select_related = ("frontend",)
