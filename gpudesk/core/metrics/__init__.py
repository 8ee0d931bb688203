"""The Prometheus exporter: fleet state as metrics (``gpudesk exporter`` and the TUI's toggle).

``board`` keeps the latest state of each host (fed by the same per-host loops the TUI runs),
``collect`` turns a snapshot of it into metric families at scrape time, ``serve`` is the HTTP
listener and ``feeds`` the CLI's loops. Nothing here imports Textual.
"""
