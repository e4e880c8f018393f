"""
C{python -m tsyncp_tx}: the C{tsyncp} command.
"""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
