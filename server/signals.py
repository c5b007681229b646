"""The signals that end a session in order (summary printed), whoever sends them: Ctrl-C,
a service manager's stop, a closed terminal. Its own module so that the command line
can name them without importing the servers (which load pylsl)."""

import signal

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
