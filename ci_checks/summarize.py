"""
Print "N passed, N failed" summed over trial logs; exit 1 if any failed or
a log has no result line.
"""

import re
import sys

passed = failed = 0
ok = True
for path in sys.argv[1:]:
    text = open(path, encoding="utf-8", errors="replace").read()
    match = re.search(r"^(PASSED|FAILED) \(([^)]*)\)\s*$", text, re.MULTILINE)
    if match is None:
        print(f"{path}: no trial result line found")
        ok = False
        continue
    counts = dict(
        (key, int(value))
        for key, value in re.findall(r"(\w+)=(\d+)", match.group(2))
    )
    passed += counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed += (
        counts.get("failures", 0)
        + counts.get("errors", 0)
        + counts.get("unexpectedSuccesses", 0)
    )
print(f"{passed} passed, {failed} failed")
sys.exit(0 if ok and failed == 0 else 1)
