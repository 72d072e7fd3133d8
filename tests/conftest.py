import os
import sys

# Make `configs.*` importable from tests, as the CLI does for config files.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
