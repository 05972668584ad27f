"""The multiprocessing context of the app's worker processes (XSLT workers, import writer processes).

'forkserver': a single-threaded server forks each worker, so the app's threads and locks are never forked
(a fork of the app's process could inherit a lock another thread held). One server serves every pool of the
process; the modules it preloads (imported once there, so each fork starts with them) are set before it
starts. 'spawn' where the platform has no forkserver.

Like any multiprocessing child, a worker imports the parent's main module unless that ran with -m as
`pkg.__main__`: in Azure the Python worker runs as `python -m azure_functions_worker`, locally its
`worker.py` is guarded by `if __name__ == "__main__"` (azure-functions-python-worker, python/prodV4/worker.py);
the devhost and pytest run as -m. A script that starts workers needs that guard too, or its workers re-run it.
"""

from __future__ import annotations

from typing import Any

# lxml and the XSLT worker: each XSLT worker starts with them loaded. Not the Azure SDK: it would count against
# every XSLT worker's address-space limit (XSLT_MEMORY_MB); writer processes import it once each.
PRELOAD = ["lxml.etree", "shared.formats.xslt_worker"]


def forkserver_context() -> Any:
    import multiprocessing

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        # No effect once the server runs; children then import what they need themselves.
        ctx.set_forkserver_preload(PRELOAD)
    return ctx
