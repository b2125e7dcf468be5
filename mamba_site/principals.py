"""Who a request acts as once authenticated (a key, a JWT subject, a frontend's client, staff):
its scopes and its limits."""

from dataclasses import dataclass

from mamba_site.errors import Forbidden

FRONTEND_PREFIX = "frontend:"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its scopes (empty: everything) and limits (None: none)."""

    kind: str  # "api_key", "jwt", "frontend", "staff" or "anonymous"
    id: str  # what its limits count under
    name: str  # what logs show
    allowed_agents: frozenset[str] = frozenset()
    allowed_models: frozenset[str] = frozenset()
    requests_per_minute: int | None = None
    concurrent_streams: int | None = None
    tokens_per_day: int | None = None
    api_key_id: int | None = None
    frontend_id: int | None = None
    client: str | None = None  # a frontend's client: its IP address (IPv6: its /64)
    # A daily token budget shared with others (a frontend's, for all its clients), counted
    # besides the caller's own.
    budget: "Principal | None" = None

    @property
    def frontend_name(self) -> str | None:
        return self.name.removeprefix(FRONTEND_PREFIX) if self.kind == "frontend" else None

    def allows_agent(self, slug: str) -> bool:
        return not self.allowed_agents or slug in self.allowed_agents

    def allows_model(self, model: str) -> bool:
        return not self.allowed_models or model in self.allowed_models

    # The refusals name only what was asked for: GET /models lists what the caller may use
    # (its scope as far as it exists), so no message has to list names.
    def check_agent(self, slug: str) -> None:
        if not self.allows_agent(slug):
            raise Forbidden(
                f"{self._who} may not use agent {slug!r}. GET /models lists the agents "
                f"{self._they} may use."
            )

    def check_model(self, model: str) -> None:
        if not self.allows_model(model):
            raise Forbidden(
                f"{self._who} may not use model {model!r}. GET /models lists the models "
                f"{self._they} may use."
            )

    @property
    def _who(self) -> str:
        return "This site" if self.kind == "frontend" else "These credentials"

    @property
    def _they(self) -> str:
        return "it" if self.kind == "frontend" else "they"


ANONYMOUS = Principal(kind="anonymous", id="anonymous", name="anonymous")
