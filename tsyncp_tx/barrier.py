"""
A network barrier: waiters block until the barrier releases them.

    >>> b = await barrier_on("127.0.0.1:8000", parties=3)   # self-releasing
    >>> w = await waiter_to("127.0.0.1:8000"); await w.wait()
"""

from ._barrier import Barrier, Waiter, barrier_on, waiter_to

__all__ = ["Barrier", "Waiter", "barrier_on", "waiter_to"]
