"""Command line: `python -m backend --help` (the commands are in backend/cli/)."""
import sys

from backend.cli.main import main

sys.exit(main())
