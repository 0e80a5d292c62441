"""The API process of the daemon (docs/daemon-contract.md): Sanic in one process on the listening
socket the trading process bound and passed down, serving ``/api/v1/*``, ``/metrics``,
``/openapi.json`` and the status page at ``/``, and reaching the trading process only through the
bridge. Run by the trading process as ``python -m engine.daemon.api --fd N --bridge SOCK --config PATH``.

Modules: ``routes`` (the route table: the one source of truth), ``schema`` (checks against it),
``auth`` (request signing), ``cache`` (the read cache), ``openapi`` (the document), ``errors``
(JSON errors, never a 500), ``page`` (the status page), ``app`` (the Sanic app), ``__main__``.
"""
