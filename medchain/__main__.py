"""``python -m medchain``."""

from medchain.cli import main

raise SystemExit(main())
