"""Offline analysis of recorded sessions: one session (:mod:`analysis.session`), run by the
live code path so that offline and live numbers agree."""
