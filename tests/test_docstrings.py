"""
Every public name of the package has a docstring (pydoctor, run by
C{.ci/run}, checks that they are well-formed epytext).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, List

from twisted.trial.unittest import SynchronousTestCase

PUBLIC_MODULES = [
    "tsyncp_tx",
    "tsyncp_tx.framing",
    "tsyncp_tx.codecs",
    "tsyncp_tx.pool",
    "tsyncp_tx.errors",
    "tsyncp_tx.channel",
    "tsyncp_tx.multi_channel",
    "tsyncp_tx.mpsc",
    "tsyncp_tx.broadcast",
    "tsyncp_tx.spsc",
    "tsyncp_tx.barrier",
    "tsyncp_tx.tap",
]


def _undocumented_members(owner: str, cls: type) -> List[str]:
    missing = []
    for klass in cls.__mro__:
        if not klass.__module__.startswith("tsyncp_tx"):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_"):
                continue
            function: Any = value.fget if isinstance(value, property) else value
            if (inspect.isfunction(function) or isinstance(value, property)) and not function.__doc__:
                missing.append(f"{owner}.{attr} (from {klass.__name__})")
    return missing


class DocstringTests(SynchronousTestCase):
    """
    Public modules, their C{__all__} names and the public methods and
    properties of public classes are documented.
    """

    def test_public_names_documented(self) -> None:
        """
        Nothing public lacks a docstring.
        """
        missing: List[str] = []
        for name in PUBLIC_MODULES:
            module = importlib.import_module(name)
            if not module.__doc__:
                missing.append(name)
            for public in getattr(module, "__all__", []):
                if public.startswith("__"):
                    continue
                obj = getattr(module, public)
                if (inspect.isclass(obj) or inspect.isfunction(obj)) and not obj.__doc__:
                    missing.append(f"{name}.{public}")
                if inspect.isclass(obj):
                    missing.extend(_undocumented_members(f"{name}.{public}", obj))
        self.assertEqual(sorted(set(missing)), [])
