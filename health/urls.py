"""Routes of the health probes."""

from django.urls import path

from health import views

# GET /health is routed by mamba_site/urls.py, which gives it the router's resting targets.
urlpatterns = [
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
]
