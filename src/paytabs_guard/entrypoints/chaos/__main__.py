"""``python -m paytabs_guard.entrypoints.chaos``: the same as ``paytabs-guard bench chaos``."""

from paytabs_guard.entrypoints.chaos import main

raise SystemExit(main())
