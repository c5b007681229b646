"""The application: the ``dyadsync`` command line (:mod:`dyadsync.cli`) and the wiring of
a service (:mod:`dyadsync.app`) from the packages below it.

Layers, each importing only those below: ``dsp`` (pure signal processing) <- ``streamer``
(LSL, XDF, sessions) <- ``server`` (rooms, hub, websocket, outputs) <- ``dashboard``
(Bokeh, a client of the server's protocol) <- ``analysis`` (recorded sessions offline) <-
``dyadsync`` (starts them all).
"""
