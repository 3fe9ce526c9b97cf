"""File-store sync: the primary site mirrors each file store to the standby site with rsync.

    layout.py    where sync state lives at each site: status, receipts, holding area, quarantine (pure)
    rsync.py     rsync argv builders and the parsers of its output (pure, doctested)
    decide.py    which site pushes, and the mass-deletion guard (pure, doctested)
    holding.py   the dated holding area: names, retention, size
    manifest.py  manifests of a store (find -printf) and their comparison: `filesync verify`
    state.py     the status the agent writes and the receipt the receiving site keeps (JSON)
    watch.py     inotify watches, event -> pending path, batching; overflow -> full reconciliation
    engine.py    executes: previews, reconciliations, batches, scoped sync and verify, quarantine

The agent's background task that drives these (role checks, one watcher and one pusher per store)
is dcctl/agent/filesync_task.py.

Nothing is lost by sync: what rsync would delete or overwrite on the receiving side is moved
to the holding area first (rsync --backup --backup-dir).
"""
