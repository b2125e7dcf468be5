"""The root URLconf: the only place that wires the apps together."""

from django.contrib import admin
from django.urls import include, path, re_path

from chat import views as chat_views
from mamba_site import views

urlpatterns = [
    # The agent playground streams through the real chat view, with the admin's session.
    path("admin/playground/chat", chat_views.playground_chat, name="admin-playground-chat"),
    path("admin/", admin.site.urls),
    path("metrics", views.metrics, name="metrics"),
    path("", include("chat.urls")),
    path("", include("health.urls")),
    # Last: any other path outside the admin is a JSON 404, also with DEBUG on.
    re_path(r"^(?!admin/)", views.not_found, name="not-found"),
]

handler404 = "mamba_site.views.not_found"
handler500 = "mamba_site.views.server_error"
