"""`python -m voxline` is the `voxline` command."""

from voxline.cli import main

raise SystemExit(main())
