"""Run the recsys CLI with the added paths judged by one rule (`recsys.added_paths.PATH_RULE`).

usage: RECSYS_DATA_DIR=... python arm.py RULE evaluate ...   (RULE: free, margin or crossfit)
"""

import sys

from recsys import added_paths
from recsys.cli import main

added_paths.PATH_RULE = sys.argv[1]
sys.argv = ["recsys", *sys.argv[2:]]
main()
