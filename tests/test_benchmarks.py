"""
Smoke tests of the benchmark suite (C{python -m benchmarks}): one tiny case
end to end, as separate processes, checking the report's shape, not its
figures (CI machines are too noisy to judge those).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from typing import List, Tuple

from twisted.trial.unittest import SynchronousTestCase

from tests._util import ROOT

_HAVE_ZMQ = importlib.util.find_spec("zmq") is not None


def _run_benchmarks(*args: str, timeout: float = 90.0) -> Tuple[int, str]:
    """
    Run C{python -m benchmarks ARGS} from the checkout's root.

    @return: C{(exit status, stdout + stderr)}.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _summary_rows(output: str, case: str) -> List[List[str]]:
    rows = []
    for line in output.splitlines():
        if line.startswith(f"| {case}"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


class QuickCaseTests(SynchronousTestCase):
    """
    C{python -m benchmarks --quick --only mpsc-raw-100 --runs 1 --count 2000}.
    """

    def test_ratio_line(self) -> None:
        """
        The tiny case runs tsyncp_tx and pyzmq in separate processes and
        prints both medians, a ratio line and a summary row with a verdict.
        """
        if not _HAVE_ZMQ:
            raise self.skipTest("pyzmq is not installed (pip install '.[bench]'); nothing to compare with")
        status, output = _run_benchmarks(
            "--quick", "--only", "mpsc-raw-100", "--runs", "1", "--count", "2000", "--no-extra"
        )
        self.assertEqual(status, 0, output)
        self.assertRegex(output, r"median tsyncp_tx: [\d,]+ msgs/s \([\d.,]+ MB/s\)  \| ratio to pyzmq \d+\.\d\dx")
        self.assertRegex(output, r"median pyzmq: [\d,]+ msgs/s")
        rows = _summary_rows(output, "mpsc-raw-100")
        self.assertEqual(len(rows), 1, output)
        case, tsyncp, zmq, ratio, target, result = rows[0]
        self.assertRegex(ratio, r"^\d+\.\d\dx$")
        self.assertIn(result, ("PASS", "MISS"))
        # The ratio is tsyncp over zmq, as printed.
        t = float(re.match(r"([\d,]+) msgs/s", tsyncp).group(1).replace(",", ""))  # type: ignore[union-attr]
        z = float(re.match(r"([\d,]+) msgs/s", zmq).group(1).replace(",", ""))  # type: ignore[union-attr]
        self.assertLessEqual(abs(float(ratio[:-1]) - t / z), 0.006, (ratio, t, z))
        self.assertNotIn("ERROR", output)

    def test_without_zmq(self) -> None:
        """
        With C{--no-zmq} (as when pyzmq is missing) the case still runs,
        says the comparison is skipped, and has no ratio.
        """
        status, output = _run_benchmarks(
            "--quick", "--only", "mpsc-raw-100", "--runs", "1", "--count", "2000", "--no-extra", "--no-zmq"
        )
        self.assertEqual(status, 0, output)
        self.assertIn("comparison skipped", output)
        self.assertRegex(output, r"median tsyncp_tx: [\d,]+ msgs/s")
        rows = _summary_rows(output, "mpsc-raw-100")
        self.assertEqual(len(rows), 1, output)
        self.assertEqual(rows[0][2], "—")
        self.assertEqual(rows[0][3], "n/a")

    def test_unknown_case(self) -> None:
        """
        An unknown C{--only} name is refused with the list of known ones.
        """
        status, output = _run_benchmarks("--only", "no-such-case")
        self.assertEqual(status, 2)
        self.assertIn("unknown case(s): no-such-case", output)
        self.assertIn("mpsc-raw-100", output)


class FloorsTests(SynchronousTestCase):
    """
    C{python benchmarks/floors.py --count 200 --runs 1}: the barrier and
    ping-pong floors (plain sockets, plain Twisted) beside tsyncp_tx.
    """

    def test_every_variant_reports(self) -> None:
        """
        Each case prints one line per variant with its figures.
        """
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, "benchmarks", "floors.py"), "--count", "200", "--runs", "1",
             "--timeout", "60"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        output = proc.stdout.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, 0, output)
        barrier = output.split("## barrier")[1].split("## pingpong")[0]
        pingpong = output.split("## pingpong")[1]
        for variant in ("sockets", "twisted", "tsyncp_tx"):
            self.assertRegex(barrier, rf"{variant} +[\d,]+ gen/s, CPU [\d,]+ µs/gen")
            self.assertRegex(pingpong, rf"{variant} +p50 [\d,.]+ µs, p99 [\d,.]+ µs, CPU [\d,]+ µs/round trip")
