"""Admin for agents (with revisions, restore and a playground) and notes."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from agents.models import Agent, AgentRevision, Note
from agents.services import agent_make_default, agent_revision_restore, agent_save
from agents.tools import REGISTRY


class AgentForm(forms.ModelForm):  # type: ignore[type-arg]
    tools = forms.MultipleChoiceField(
        choices=[(name, f"{name} ({tool.kind})") for name, tool in REGISTRY.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="The tools this agent may call. A request's `tools` can only narrow them.",
    )

    class Meta:
        model = Agent
        fields = (
            "slug",
            "name",
            "description",
            "enabled",
            "is_default",
            "model",
            "system_prompt",
            "tools",
            "temperature",
            "max_output_tokens",
            "max_steps",
            "accept_client_system_messages",
        )
        widgets = {
            "system_prompt": forms.Textarea(
                attrs={"rows": 24, "cols": 100, "style": "font-family: monospace; width: 95%"}
            ),
            "description": forms.Textarea(attrs={"rows": 2, "cols": 100}),
        }

    def clean_tools(self) -> list[str]:
        names: list[str] = self.cleaned_data["tools"]
        unknown = sorted(set(names) - set(REGISTRY))
        if unknown:
            raise ValidationError(f"Unknown tools: {', '.join(unknown)}.")
        # Keep the order the agent had (it is the order the model sees); new tools go last.
        kept = [name for name in (self.instance.tools or []) if name in names]
        return kept + [name for name in REGISTRY if name in names and name not in kept]


class AgentRevisionInline(admin.TabularInline):  # type: ignore[type-arg]
    model = AgentRevision
    extra = 0
    can_delete = False
    ordering = ("-version",)
    fields = ("version", "created_at", "author", "changes", "comment", "restore")
    readonly_fields = fields
    verbose_name_plural = "History (restore any version in one click)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="What changed")
    def changes(self, revision: AgentRevision) -> str:
        return ", ".join(revision.changed_fields) or "-"

    @admin.display(description="")
    def restore(self, revision: AgentRevision) -> str:
        url = reverse("admin:agents_agent_restore", args=(revision.agent_id, revision.pk))
        return format_html(
            '<button type="submit" class="button" formaction="{}" formnovalidate '
            'name="_restore">Restore version {}</button>',
            url,
            revision.version,
        )


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = AgentForm
    list_display = (
        "slug",
        "name",
        "model_label",
        "tool_list",
        "enabled",
        "is_default",
        "updated_at",
    )
    list_filter = ("enabled", "is_default")
    search_fields = ("slug", "name", "description", "system_prompt")
    readonly_fields = ("created_at", "updated_at", "playground_link")
    inlines = (AgentRevisionInline,)
    actions = ("make_default", "enable", "disable")
    fieldsets = (
        (None, {"fields": ("slug", "name", "description", "enabled", "is_default")}),
        (
            "Behaviour",
            {"fields": ("model", "system_prompt", "accept_client_system_messages", "tools")},
        ),
        ("Limits", {"fields": ("temperature", "max_output_tokens", "max_steps")}),
        (None, {"fields": ("playground_link", "created_at", "updated_at")}),
    )

    @admin.display(description="Model", ordering="model")
    def model_label(self, agent: Agent) -> str:
        return agent.model or "(request's)"

    @admin.display(description="Tools")
    def tool_list(self, agent: Agent) -> str:
        return ", ".join(agent.tools) or "-"

    @admin.display(description="Playground")
    def playground_link(self, agent: Agent) -> str:
        if not agent.pk:
            return "Save the agent first."
        url = reverse("admin:agents_agent_playground", args=(agent.pk,))
        return format_html('<a class="button" href="{}">Open the playground</a>', url)

    def save_model(self, request: HttpRequest, obj: Agent, form: Any, change: bool) -> None:
        agent_save(agent=obj, author=request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Agent | None = None) -> bool:
        # Requests without `agent` need the default: make another agent the default first.
        # (Django's bulk delete refuses a selection that includes it, with a 403.)
        return super().has_delete_permission(request, obj) and not (obj and obj.is_default)

    @admin.action(description="Make the selected agent the default", permissions=("change",))
    def make_default(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one agent.", messages.ERROR)
            return
        agent = queryset.get()
        agent_make_default(agent=agent, author=request.user)
        self.message_user(request, f"{agent.slug} is now the default agent.")

    @admin.action(description="Enable the selected agents", permissions=("change",))
    def enable(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable the selected agents", permissions=("change",))
    def disable(self, request: HttpRequest, queryset: QuerySet[Agent]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[Agent], *, enabled: bool
    ) -> None:
        for agent in queryset:
            agent.enabled = enabled
            try:
                agent.full_clean()
            except ValidationError as error:
                self.message_user(
                    request, f"{agent.slug}: {'; '.join(error.messages)}", messages.ERROR
                )
                continue
            agent_save(agent=agent, author=request.user)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:agent_id>/restore/<int:revision_id>/",
                self.admin_site.admin_view(self.restore_view),
                name="agents_agent_restore",
            ),
            path(
                "<int:agent_id>/playground/",
                self.admin_site.admin_view(self.playground_view),
                name="agents_agent_playground",
            ),
            *super().get_urls(),
        ]

    def restore_view(self, request: HttpRequest, agent_id: int, revision_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponse(status=405, headers={"Allow": "POST"})
        agent = get_object_or_404(Agent, pk=agent_id)
        if not self.has_change_permission(request, agent):
            raise PermissionDenied
        revision = get_object_or_404(AgentRevision, pk=revision_id, agent=agent)
        try:
            agent_revision_restore(revision=revision, author=request.user)
        except ValidationError as error:
            self.message_user(
                request,
                f"Version {revision.version} cannot be restored: {'; '.join(error.messages)}",
                messages.ERROR,
            )
        else:
            self.message_user(request, f"Restored version {revision.version} of {agent.slug}.")
        return HttpResponseRedirect(reverse("admin:agents_agent_change", args=(agent.pk,)))

    def playground_view(self, request: HttpRequest, agent_id: int) -> HttpResponse:
        agent = get_object_or_404(Agent, pk=agent_id)
        if not self.has_view_permission(request, agent):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": f"Playground: {agent.name}",
            "agent": agent,
            "opts": self.model._meta,
            "chat_url": reverse("admin-playground-chat"),
            "tools": format_html_join(", ", "<code>{}</code>", ((t,) for t in agent.tools)),
        }
        return TemplateResponse(request, "admin/agents/agent/playground.html", context)


@admin.register(Note)
class NoteAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("title", "tags", "source_url", "updated_at")
    search_fields = ("title", "body", "tags", "source_url")
    readonly_fields = ("created_at", "updated_at")
