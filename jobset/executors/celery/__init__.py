"""The Celery executor: job sets over Redis and Celery workers.

Producer side, from the top down:

- :mod:`.executor`: :class:`~.executor.CeleryExecutor`, the executor a user holds; it owns
  the clients (:mod:`.connect`, Celery's configuration in :mod:`.config`) and hands them on;
- :mod:`.run`: one submitted set (:class:`~.run.CeleryRun`): states, results, wait, cancel;
- :mod:`.publish`: sub-job messages, published in bulk;
- :mod:`.recovery`: sub-jobs lost with their message, found and published again;
- :mod:`.health`: what is checked before a set is sent (reachable, eviction, versions);
- :mod:`.registry`, :mod:`.cleanup`: stored sets listed, loaded, deleted and pruned.

Shared with the workers:

- :mod:`.store` (the signed store), :mod:`.evidence` (signed proof that a sub-job ended),
  :mod:`.tally` (per-set counts of sub-job states), :mod:`.scripts` and ``lua/`` (the Lua
  they run, one file each).
"""
