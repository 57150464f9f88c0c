"""The bare project's ASGI application (Django's own, no Channels router)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bare.settings")
application = get_asgi_application()
