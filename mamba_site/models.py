"""API keys (stored as a look-up prefix and a SHA-256 digest), browser frontends (admitted by
origin), and the daily usage of both."""

from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from mamba_site.origins import OriginError, origins_parse


class ApiKey(models.Model):
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="api_keys",
    )
    prefix = models.CharField(max_length=20, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    allowed_agents = models.JSONField(
        default=list, blank=True, help_text="Agent slugs this key may use; empty: all."
    )
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names this key may use; empty: all."
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty: no limit."
    )
    concurrent_streams = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty: no limit."
    )
    tokens_per_day = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Empty: no limit."
    )

    class Meta:
        ordering = ("-created_at",)
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def state(self, now: datetime | None = None) -> str:
        now = now or timezone.now()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class DailyUsage(models.Model):
    """What one key or frontend used on one day (UTC): the usage outbox adds to it in batches
    (`mamba_site.usage`)."""

    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ("-day",)


class ApiKeyUsage(DailyUsage):
    """What one key used on one day (UTC); written after each stream."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage")

    class Meta(DailyUsage.Meta):
        verbose_name = "API key usage"
        verbose_name_plural = "API key usage"
        constraints = (
            models.UniqueConstraint(fields=("api_key", "day"), name="usage_per_key_day"),
        )

    def __str__(self) -> str:
        return f"{self.api_key_id} {self.day}"


def origins_validate(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Origins must be a list of strings.")
    try:
        normalized = origins_parse(" ".join(value))
    except OriginError as error:
        raise ValidationError(str(error)) from None
    if normalized != value:
        raise ValidationError(f"Write the origins as browsers send them: {', '.join(normalized)}.")


class Frontend(models.Model):
    """A browser frontend that holds no secret: admitted by its `Origin`, limited per client
    (IP address) and by a daily token budget for all of its clients together."""

    name = models.SlugField(
        max_length=100, unique=True, help_text="Shown in logs and metrics as frontend:<name>."
    )
    origins = models.JSONField(
        default=list,
        validators=[origins_validate],
        help_text="Exact origins, scheme://host[:port], as the browser sends them.",
    )
    enabled = models.BooleanField(default=True)
    allowed_agents = models.JSONField(
        default=list, blank=True, help_text="Agent slugs its pages may use; empty: all."
    )
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model names its pages may use; empty: all."
    )
    requests_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=20,
        validators=[MinValueValidator(1)],
        help_text="Per client (IP address, IPv6 /64). Empty: no limit.",
    )
    concurrent_streams = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=2,
        validators=[MinValueValidator(1)],
        help_text="Per client. Empty: no limit.",
    )
    tokens_per_day = models.PositiveIntegerField(
        null=True,
        blank=True,
        default=50_000,
        validators=[MinValueValidator(1)],
        help_text="Per client, per day (UTC). Empty: no limit.",
    )
    total_tokens_per_day = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        default=1_000_000,
        validators=[MinValueValidator(1)],
        help_text="All clients together, per day (UTC). Empty: no limit.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """An origin belongs to one frontend: two would make its limits ambiguous."""
        if not isinstance(self.origins, list):
            return
        others = Frontend.objects.exclude(pk=self.pk).values_list("name", "origins")
        taken = {o: name for name, origins in others for o in origins or () if o in self.origins}
        if taken:
            names = ", ".join(f"{origin} ({name})" for origin, name in taken.items())
            raise ValidationError({"origins": f"Already registered by another frontend: {names}."})


class FrontendUsage(DailyUsage):
    """What one frontend's clients used on one day (UTC); written after each stream."""

    frontend = models.ForeignKey(Frontend, on_delete=models.CASCADE, related_name="usage")

    class Meta(DailyUsage.Meta):
        verbose_name = "frontend usage"
        verbose_name_plural = "frontend usage"
        constraints = (
            models.UniqueConstraint(fields=("frontend", "day"), name="usage_per_frontend_day"),
        )

    def __str__(self) -> str:
        return f"{self.frontend_id} {self.day}"
