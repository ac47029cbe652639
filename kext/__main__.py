"""`python -m kext`: the same as the `kext` command."""

from kext.cli import main

raise SystemExit(main())
