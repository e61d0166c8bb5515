"""``python -m nnexp.experiments NAME``: the command that regenerates an experiment page. Only its
name lives here, so that the documented command (and the one each page names) keeps working; the
code is `nnexp.report.experiments`."""

import sys

from nnexp.report.experiments import main

if __name__ == "__main__":
    sys.exit(main())
