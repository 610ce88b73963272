"""What code that starts threads must know about the gevent worker (gunicorn.conf.py).

gunicorn's gevent worker monkey-patches the standard library before the app is imported:
a ``threading.Thread`` is then a greenlet on the one OS thread, and a call that does not
yield (C code, even one that releases the GIL; a module import) stops every other request
until it returns. Such calls go to ``one_os_thread``.
"""

from __future__ import annotations

import sys
from concurrent.futures import Executor, ThreadPoolExecutor


def one_os_thread(name: str) -> Executor:
    """An executor of one operating-system thread, under gevent or not. Under gevent it is
    gevent's own, whose results a greenlet waits for cooperatively."""
    if under_gevent():
        from gevent.threadpool import ThreadPoolExecutor as NativeThreadPoolExecutor

        return NativeThreadPoolExecutor(1)
    return ThreadPoolExecutor(1, thread_name_prefix=name)


def under_gevent() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and monkey.is_module_patched("threading")
