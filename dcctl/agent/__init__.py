"""The site agent (`dcctl agent run`): background tasks keep snapshots fresh; /metrics only reads them.

    setup.py       which services and settings one agent serves (pure)
    metrics.py     every metric: name, type, help, labels (pure)
    tasks.py       THE registry of background tasks; add a new kind of task there
    collector.py   PeriodicCollector: runs one Source every `interval`, keeps its last snapshot
    status.py      the status Source (both sites' status and every check); status_metrics.py, its
                   pure snapshot -> samples and snapshot -> events
    exposition.py  the prometheus-client Collector that turns the tasks' samples into families
    server.py      /metrics and /healthz over HTTP or HTTPS; auth.py, basic auth with bcrypt
    daemon.py      wires it together: start, serve, SIGTERM/SIGINT, clean stop
"""
