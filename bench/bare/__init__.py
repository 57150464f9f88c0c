"""A bare Django project: the baseline of the HTTP figures (bench/trigger_api.py).

No installed apps, no middleware, no database, one JSON view; served by the same daphne
command as Runyard's web (`python -m daphne -b 127.0.0.1 -p PORT bench.bare.asgi:application`).
"""
