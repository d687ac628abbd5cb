"""``python -m airflow_provider_odps_tunnel.emulator``: the ``odps-tunnel-emulator`` CLI."""

import sys

from .cli import main

sys.exit(main())
