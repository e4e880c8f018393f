"""
Run the benchmark suite: C{python -m benchmarks [--quick] [--only NAME,...]
[--runs N] [--count N]} from the checkout's root (C{--help} for more).
"""

import sys

from benchmarks._harness import install_signal_handlers, main

if __name__ == "__main__":
    install_signal_handlers()
    sys.exit(main())
