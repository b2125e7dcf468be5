"""Agents (with their revisions) and the notes the `search_notes` tool searches."""

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from mamba_site.providers import known_model_ids

# The fields a revision records and a restore puts back.
VERSIONED_FIELDS = (
    "slug",
    "name",
    "description",
    "system_prompt",
    "model",
    "tools",
    "temperature",
    "max_output_tokens",
    "max_steps",
    "accept_client_system_messages",
    "enabled",
    "is_default",
)


class AgentQuerySet(models.QuerySet["Agent"]):
    def enabled(self) -> "AgentQuerySet":
        return self.filter(enabled=True)


class Agent(models.Model):
    slug = models.SlugField(
        max_length=64, unique=True, help_text="What clients send as `agent` in POST /chat."
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    system_prompt = models.TextField()
    model = models.CharField(
        max_length=200,
        blank=True,
        help_text="Pinned model; wins over the request's `model`. Empty: the request decides.",
    )
    tools = models.JSONField(default=list, blank=True, help_text="Names from the tool registry.")
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    max_output_tokens = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(200_000)]
    )
    max_steps = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Model calls per reply; empty: MAMBA_CHAT__MAX_STEPS.",
    )
    accept_client_system_messages = models.BooleanField(
        "Accept client system messages",
        default=False,
        help_text="Whether a request may contain messages with role `system`. They follow the "
        "system prompt above, which stays first. Off: such a request is refused (422).",
    )
    enabled = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False, help_text="Answers requests that name no agent. Exactly one agent is."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AgentQuerySet.as_manager()

    class Meta:
        ordering = ("slug",)
        constraints = (
            models.UniqueConstraint(
                fields=("is_default",), condition=Q(is_default=True), name="agents_one_default"
            ),
        )

    def __str__(self) -> str:
        return self.slug

    def clean(self) -> None:
        # Tool names are checked against the registry by the admin form (agents.admin).
        errors: dict[str, str] = {}
        if not isinstance(self.tools, list) or not all(isinstance(t, str) for t in self.tools):
            errors["tools"] = "Tools must be a list of tool names."
        if self.model and self.model not in known_model_ids():
            errors["model"] = (
                f"Unknown model {self.model!r}. Known: {', '.join(sorted(known_model_ids()))} "
                "(configure MAMBA_MODELS__CATALOG)."
            )
        if self.is_default and not self.enabled:
            errors["enabled"] = "The default agent must be enabled."
        others = Agent.objects.exclude(pk=self.pk)
        if self.is_default and others.filter(is_default=True).exists():
            errors["is_default"] = "Another agent is the default; unset it there first."
        if not self.is_default and self.pk and not others.filter(is_default=True).exists():
            errors["is_default"] = "This is the default agent; make another one the default first."
        if errors:
            raise ValidationError(errors)

    def snapshot(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in VERSIONED_FIELDS}


class AgentRevision(models.Model):
    """The state of an agent after one save: who saved it, when, and what changed."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="revisions")
    version = models.PositiveIntegerField()
    snapshot = models.JSONField()
    changed_fields = models.JSONField(default=list)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    comment = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-version",)
        constraints = (
            models.UniqueConstraint(fields=("agent", "version"), name="agents_revision_version"),
        )

    def __str__(self) -> str:
        return f"{self.agent_id} v{self.version}"


class Note(models.Model):
    """A note the research agent can search (`search_notes`)."""

    title = models.CharField(max_length=200)
    body = models.TextField()
    tags = models.CharField(max_length=200, blank=True, help_text="Comma separated.")
    source_url = models.URLField(blank=True, max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-updated_at",)

    def __str__(self) -> str:
        return self.title

    @property
    def tag_list(self) -> list[str]:
        return [tag.strip() for tag in self.tags.split(",") if tag.strip()]
