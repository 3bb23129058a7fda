"""``python -m ml_monitoring_service``: same as ``./main.sh``."""

import sys

from ml_monitoring_service.cli import main

sys.exit(main())
