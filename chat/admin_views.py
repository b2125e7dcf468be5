"""Staff pages of the chat app in the admin site; mamba_site/urls.py wraps them in
`admin.site.admin_view` (staff login, no cache, CSRF) and routes them under /admin/."""

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse

from chat.routing import routers
from chat.status import providers_page


def providers(request: HttpRequest) -> TemplateResponse:
    """Read only: every model name's targets, their state on this replica, the providers."""
    router = routers.get()
    # On the event loop, where the router lives: the report reads the shared rests there.
    rows = async_to_sync(router.current_report)()
    context = {
        **admin.site.each_context(request),
        "title": "Providers",
        **providers_page(router, rows),
    }
    return TemplateResponse(request, "admin/providers.html", context)
