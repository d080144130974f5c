"""The operator's screen: ``station hmi``, a web app in its own process.

It is a client of the station like any other: it subscribes to the daemon's PUB socket
(verdicts, status, events), reads the daemon's store (SQLite, opened read-only, and the frame
previews and defect maps beside it), sends ``inspect`` on the command socket for a test part,
and keeps its own small records (acknowledgements, disagreements) in ``hmi.state_dir``. It
never writes the daemon's store, and a slow browser never slows an inspection.

Modules, each for one thing:

- ``clock``: local time and the shifts of a day (``hmi.timezone``, ``hmi.shifts``)
- ``records``: read-only queries of the daemon's store (search, one part, shift figures)
- ``state``: the HMI's own SQLite (acknowledgements, "operator disagrees" marks)
- ``export``: a disagreement's images and masks, laid out for ``station train --format folder``
- ``feed``: the PUB subscriber thread and its fan-out to server-sent-event streams
- ``charts``: server-rendered SVG charts (bars, stacked bars, a histogram)
- ``views``: the view models: plain data for each page, built from the above
- ``auth``: the action token, sessions, who may view
- ``app``: the Starlette application (routes, templates, SSE); ``templates/`` and ``static/``
  hold every asset, so the page works with no internet

Only ``app`` (and ``station.commands.hmi``, when run) imports Starlette and uvicorn, the
optional extra ``hmi``; everything else is plain Python and unit-tested without a server.
"""
