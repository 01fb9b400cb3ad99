"""WSGI entry point for production servers, e.g.
``gunicorn -k gthread --threads 64 -b 127.0.0.1:8080 web.wsgi:app``.

Like a ``__main__``, this entry point reads the environment (``MEDCHAIN_WEB_*``). Use one worker
process (``-w 1``): the live hub is in memory; scale with threads (each SSE client holds one).
"""

from __future__ import annotations

import logging
import os

from web.app import create_app
from web.settings import load_web_settings

logging.basicConfig(level=os.environ.get("MEDCHAIN_LOG_LEVEL", "INFO"))
app = create_app(load_web_settings(os.environ))
