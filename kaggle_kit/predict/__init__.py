"""The prediction job: stream a learner's predictions over any number of items in bounded RAM, resumably.

``stream`` (``stream_predict``) plans chunks (``chunks``), writes them through a sink (``sinks``: CSV or arrays) with
rows from ``writers``, and commits a manifest after each chunk (``progress``) that names the run by ``identity``.
"""
