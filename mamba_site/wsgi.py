"""WSGI entry point, for tools that need one; the service itself runs on ASGI (daphne)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mamba_site.settings")

application = get_wsgi_application()
