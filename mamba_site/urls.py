"""The root URLconf: the only place that wires the apps together."""

from django.contrib import admin
from django.urls import include, path, re_path

from chat import admin_views as chat_admin_views
from chat import views as chat_views
from chat.status import providers_resting
from health import views as health_views
from mamba_site import views

urlpatterns = [
    # The agent playground streams through the real chat view, with the admin's session.
    path("admin/playground/chat", chat_views.playground_chat, name="admin-playground-chat"),
    path(
        "admin/providers/",
        admin.site.admin_view(chat_admin_views.providers),
        name="admin-providers",
    ),
    path("admin/", admin.site.urls),
    path("metrics", views.metrics, name="metrics"),
    path("", include("chat.urls")),
    # The full report also shows the router's resting targets (health does not import chat).
    path("health", health_views.health, {"resting": providers_resting}, name="health"),
    path("", include("health.urls")),
    # Last: any other path outside the admin is a JSON 404, also with DEBUG on.
    re_path(r"^(?!admin/)", views.not_found, name="not-found"),
]

handler404 = "mamba_site.views.not_found"
handler500 = "mamba_site.views.server_error"
