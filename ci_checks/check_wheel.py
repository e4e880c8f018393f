"""
Build a wheel from the checkout and check what it ships: the package with
py.typed and the twistd plugin, but no twisted/__init__.py,
twisted/plugins/__init__.py or dropin.cache (any of which would shadow or
corrupt Twisted's own plugin package), and that the installed package imports.
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
# The installed package (not the checkout) imports: run from a scratch
# directory so the checkout is not on sys.path.
with tempfile.TemporaryDirectory() as scratch:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tsyncp_tx, tsyncp_tx.framing, tsyncp_tx.codecs, tsyncp_tx.pool; "
            "print(tsyncp_tx.__file__)",
        ],
        cwd=scratch,
        capture_output=True,
        text=True,
    )
location = probe.stdout.strip()
if probe.returncode != 0 or "site-packages" not in location:
    problems.append(f"installed package does not import: {probe.stderr.strip() or location}")
else:
    print(f"installed package imports from {location}")
for problem in problems:
    print(problem)
print(f"wheel {wheel.rsplit('/', 1)[-1]}: {'OK' if not problems else 'BAD'}")
sys.exit(1 if problems else 0)
