"""The monitoring daemon: ``./main.sh`` without ``--run-once-*`` flags (see ``docs/DAEMON.md``)."""
