"""ASGI entry point: `daphne mamba_site.asgi:application`."""

import os
import sys

from mamba_site.handler import get_api_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mamba_site.settings")

# Django must be set up before anything that touches models is imported.
django_asgi_app = get_api_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from mamba_site.bodylimit import BodyLimit  # noqa: E402
from mamba_site.checks import log_startup_warnings  # noqa: E402

# `manage.py runserver` has just run every system check (ours too) and refuses to start on an
# error; other servers (python -m mamba_site.serve, daphne) run none, so they are run here.
if sys.argv[1:2] != ["runserver"]:
    log_startup_warnings()

# Outermost: a body over the limit is refused before Django buffers it or anyone authenticates.
application = BodyLimit(
    ProtocolTypeRouter({"http": django_asgi_app}), max_body_bytes=settings.CHAT_MAX_BODY_BYTES
)
