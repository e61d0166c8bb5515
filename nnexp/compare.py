"""``python -m nnexp.compare``: the command line of the sweep report. Only its name lives here, so
that the documented command keeps working; the code is `nnexp.report.compare`."""

import sys

from nnexp.report.compare import main

if __name__ == "__main__":
    sys.exit(main())
