"""
Build a wheel from the checkout and check what it ships: the package with
py.typed and the twistd plugin, but no twisted/__init__.py,
twisted/plugins/__init__.py or dropin.cache (any of which would shadow or
corrupt Twisted's own plugin package).
"""

import glob
import subprocess
import sys
import tempfile
import zipfile

with tempfile.TemporaryDirectory() as out:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, "."],
        check=True,
    )
    (wheel,) = glob.glob(f"{out}/tsyncp_tx-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

required = {
    "tsyncp_tx/__init__.py",
    "tsyncp_tx/py.typed",
    "tsyncp_tx/framing.py",
    "tsyncp_tx/codecs.py",
    "tsyncp_tx/pool.py",
    "twisted/plugins/tsyncp_tx_plugin.py",
}
forbidden = {"twisted/__init__.py", "twisted/plugins/__init__.py"}
problems = [f"missing {n}" for n in sorted(required - names)]
problems += [f"must not ship {n}" for n in sorted(forbidden & names)]
problems += [f"must not ship {n}" for n in sorted(names) if n.endswith("dropin.cache")]
for problem in problems:
    print(problem)
print(f"wheel {wheel.rsplit('/', 1)[-1]}: {'OK' if not problems else 'BAD'}")
sys.exit(1 if problems else 0)
