"""The dyadsync dashboard: a Bokeh server app that is a websocket client of ``server/``.

Entry point: :func:`dashboard.serve.start_dashboard` (imported from its module, so that
importing the light, pure parts — :mod:`dashboard.messages`, :mod:`dashboard.state` — does
not pull in Bokeh). It relies only on the wire protocol in ``docs/protocol.md``.
"""
