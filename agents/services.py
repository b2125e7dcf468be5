"""Writes of agents: saves that keep a revision, restores, and switching the default."""

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

from agents.models import VERSIONED_FIELDS, Agent, AgentRevision

# A restore brings back an agent's content; which agent is the default is not part of it.
RESTORED_FIELDS = tuple(name for name in VERSIONED_FIELDS if name != "is_default")


@transaction.atomic
def agent_save(
    *, agent: Agent, author: User | AnonymousUser | None, comment: str = ""
) -> AgentRevision:
    """Save `agent` and record the new state as its next revision (who, when, what changed)."""
    previous = Agent.objects.select_for_update().filter(pk=agent.pk).first() if agent.pk else None
    agent.save()
    changed = [
        name
        for name in VERSIONED_FIELDS
        if previous is None or getattr(previous, name) != getattr(agent, name)
    ]
    last = agent.revisions.order_by("-version").first()
    return AgentRevision.objects.create(
        agent=agent,
        version=last.version + 1 if last else 1,
        snapshot=agent.snapshot(),
        changed_fields=changed,
        author=author if isinstance(author, User) and author.pk else None,
        comment=comment,
    )


@transaction.atomic
def agent_revision_restore(
    *, revision: AgentRevision, author: User | AnonymousUser | None
) -> AgentRevision:
    """Put back the revision's content; raises `ValidationError` if it is no longer valid."""
    agent = Agent.objects.select_for_update().get(pk=revision.agent_id)
    for name in RESTORED_FIELDS:
        if name in revision.snapshot:
            setattr(agent, name, revision.snapshot[name])
    agent.full_clean()
    return agent_save(agent=agent, author=author, comment=f"Restored version {revision.version}")


@transaction.atomic
def agent_make_default(*, agent: Agent, author: User | AnonymousUser | None) -> None:
    """Make `agent` the default (and enabled), unsetting the previous default."""
    for other in Agent.objects.select_for_update().filter(is_default=True).exclude(pk=agent.pk):
        other.is_default = False
        agent_save(agent=other, author=author, comment=f"Default moved to {agent.slug}")
    agent.is_default = True
    agent.enabled = True
    agent_save(agent=agent, author=author, comment="Made the default agent")
