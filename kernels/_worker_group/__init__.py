"""Worker groups: one iterative kernel run by the Dask workers that hold its data, side by
side, swapping each pass's small results directly (an allgather), with no scheduler round
trip per pass.

What it buys
------------
An iterative kernel (Lloyd's k-means) that asks the scheduler for one pass per iteration
pays a client -> scheduler -> workers -> client round trip each time: about 10 ms on a small
cluster, more than a whole pass over a million rows. Run as a worker group, a pass costs a
worker-to-worker message instead (a pipe between workers of one machine, the workers' comms
between machines), and the data are read from the workers' memory, not from the source: k-means
over Dask then runs at about the speed of k-means in memory (``hpcjobs bench kmeans-lloyd``,
``hpcjobs-dask`` against ``hpcjobs``).

How
---
* :func:`keep_blocks` persists a Dask array's row blocks on the workers, when they fit in
  half the workers' memory, and records which worker holds which blocks.
* :meth:`KeptBlocks.run` (:func:`run_group` below it) starts one long task per worker that
  holds blocks: a *member* of the group. Each member sees its own blocks as
  :class:`MemberBlocks`, whose ``map_reduce`` runs a pass over them and then combines every
  member's part by :meth:`Group.allgather`: every member combines the same parts in the same
  order and so takes the same decisions.
* Messages go over the workers' own comms (so a TLS cluster stays TLS); members on one
  machine swap small parts through named pipes between their threads (``_pipes``).
* A member that fails sends its exception to its peers, which raise it too; a peer that goes
  silent for much longer than a pass takes makes the others raise :class:`MemberLost` rather
  than hang. A loop that records each finished step's agreed state (:meth:`Group.save`) can
  be resumed after a worker dies: :func:`last_saved` picks the most advanced state from the
  failed members' futures. What members leave behind for later tasks (:meth:`Group.keep`)
  those tasks take with :func:`take_kept`.

"Member" here is a worker's place in a group (its index in the group's ``placement``); it is
not an MPI rank, which is a process of a batch job (``hpcjobs.runtime``).

This package imports ``distributed``: kernels import it only where they run on a cluster.
"""

from hpcjobs.kernels._worker_group._blocks import KeptBlocks, MemberBlocks, keep_blocks
from hpcjobs.kernels._worker_group._group import (
    PLUGIN_NAME,
    Group,
    MemberLost,
    last_saved,
    run_group,
    take_kept,
)

__all__ = ["PLUGIN_NAME", "Group", "KeptBlocks", "MemberBlocks", "MemberLost", "keep_blocks",
           "last_saved", "run_group", "take_kept"]
