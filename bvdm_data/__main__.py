"""``python -m bvdm_data`` is the same as the ``bvdm-data`` command."""

from bvdm_data.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
